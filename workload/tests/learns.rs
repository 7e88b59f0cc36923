//! The demo workload must actually learn: three generations of the sample loop's recipe
//! (selfplay with the best model, training on the newest games, promotion on the gauntlet),
//! run in-process with the same functions the roles use, give a best model that beats `random`
//! in at least 90% and `heuristic` in at least 60% of games. Deterministic given the seeds.

use ringrift_demo::game::Board;
use ringrift_demo::mcts::Search;
use ringrift_demo::net::{DEFAULT_HIDDEN, Net};
use ringrift_demo::players::Player;
use ringrift_demo::record::{GameRecord, result_of};
use ringrift_demo::rng::Rng;
use ringrift_demo::roles::selfplay_game;
use ringrift_demo::train::{Settings, train};

/// Score of `a` against `b` over `games` games with two random opening plies per pair of games.
fn score(a: &mut Player, b: &mut Player, games: u64, seed: u64) -> f64 {
    let mut points = 0.0;
    for g in 0..games {
        let mut opening = Rng::derive(seed ^ (g / 2), "opening");
        let mut board = Board::new();
        for _ in 0..2 {
            let legal: Vec<usize> = board.legal().collect();
            board.play(legal[opening.below(legal.len())]);
        }
        let mut rng = Rng::new(seed ^ g);
        let a_first = g % 2 == 0;
        let outcome = loop {
            if let Some(o) = board.outcome() {
                break result_of(o) * if a_first { 1 } else { -1 };
            }
            let col = if board.first_to_move() == a_first {
                a.choose(&board, &mut rng)
            } else {
                b.choose(&board, &mut rng)
            };
            board.play(col);
        };
        points += f64::from(outcome + 1) / 2.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = games as f64;
    points / n
}

#[test]
fn three_generations_beat_the_baselines() {
    let mut best: Option<Net> = None;
    let mut games: Vec<GameRecord> = Vec::new();
    let untrained = score(&mut Player::search(None, 64), &mut Player::Heuristic, 100, 7);
    let mut last = (0.0, 0.0);
    for generation in 1..=3u64 {
        let mut rng = Rng::new(generation * 1000);
        let mut search = Search::default();
        for _ in 0..400 {
            games.push(selfplay_game(best.as_ref(), 64, &mut rng, &mut search));
        }
        let window = &games[games.len().saturating_sub(2000)..];
        let samples: Vec<_> = window.iter().flat_map(|g| g.samples().unwrap()).collect();
        let mut net = best
            .clone()
            .unwrap_or_else(|| Net::new(DEFAULT_HIDDEN, generation));
        let settings = Settings {
            steps: 2000,
            batch_size: 256,
            learning_rate: 0.001,
            weight_decay: 0.0001,
        };
        train(
            &mut net,
            &samples,
            &settings,
            &mut Rng::new(generation),
            500,
            |_, _| {},
        )
        .unwrap();
        let mut candidate = Player::search(Some(net.clone()), 64);
        let against_best = score(
            &mut candidate,
            &mut Player::search(best.clone(), 64),
            100,
            generation,
        );
        let random = score(&mut candidate, &mut Player::Random, 100, generation);
        let heuristic = score(&mut candidate, &mut Player::Heuristic, 100, generation);
        let deciding = if best.is_some() { against_best } else { random };
        if deciding >= 0.55 {
            best = Some(net);
            last = (random, heuristic);
        }
        eprintln!(
            "generation {generation}: vs best {against_best:.2}, random {random:.2}, heuristic {heuristic:.2}"
        );
    }
    assert!(best.is_some(), "nothing was ever promoted");
    assert!(last.0 >= 0.9, "best model scores {:.2} against random", last.0);
    assert!(last.1 >= 0.6, "best model scores {:.2} against heuristic", last.1);
    assert!(
        last.1 > untrained + 0.3,
        "learning made a difference: untrained search {untrained:.2}, best {:.2}",
        last.1
    );
}
