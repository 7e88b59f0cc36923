//! The three roles under the workload contract: read `RINGRIFT_*`, play or train, report
//! `@ringrift` progress lines on stdout, and leave outputs (and `result.json`) in the output
//! directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringrift_contract::{Baseline, Game, GauntletParams, Params, Report, SelfplayParams, TrainingParams};
use serde_json::{Value, json};

use crate::game::Board;
use crate::mcts::{Noise, Search, most_visited, sample_visits};
use crate::net::{DEFAULT_HIDDEN, Net};
use crate::players::Player;
use crate::record::{GameRecord, Sample, result_of};
use crate::rng::{Rng, hash};
use crate::train::Settings;

/// Plies played by sampling the search's visits in selfplay (for variety), before playing its
/// best move.
const SAMPLED_PLIES: usize = 10;
/// Share of the root prior replaced by noise in selfplay.
const NOISE: f32 = 0.25;
/// Random plies opening each pair of gauntlet games.
const OPENING_PLIES: usize = 2;
/// Least time between two progress reports.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// What the agent hands a task (DESIGN.md section 6).
#[derive(Debug, Clone)]
pub struct Contract {
    /// `RINGRIFT_PARAMS`, read as `RINGRIFT_ROLE`'s parameters.
    pub params: Params,
    /// `RINGRIFT_TASK`: names the output files.
    pub task: String,
    /// `RINGRIFT_INPUT_DIR`.
    pub input_dir: PathBuf,
    /// `RINGRIFT_OUTPUT_DIR`.
    pub output_dir: PathBuf,
    /// `RINGRIFT_RESUME_FROM`: a checkpoint an earlier attempt wrote (training).
    pub resume_from: Option<PathBuf>,
}

/// Reports progress lines, at most every [`REPORT_EVERY`] unless told to flush.
struct Reporter<'a> {
    out: &'a mut dyn Write,
    last: Option<Instant>,
}

impl Reporter<'_> {
    fn report(&mut self, report: &Report, force: bool) {
        if !force && self.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let _ = writeln!(self.out, "{report}");
        let _ = self.out.flush();
    }
}

/// Checks that the game is the one this workload plays (none named: that one).
fn check_game(game: Option<&Game>) -> Result<(), String> {
    let Some(game) = game else { return Ok(()) };
    if game.board != "connect4" {
        return Err(format!(
            "params.game.board: the demo workload plays \"connect4\", not {:?}",
            game.board
        ));
    }
    if game.players != 2 {
        return Err(format!(
            "params.game.players: connect4 has 2 players, not {}",
            game.players
        ));
    }
    Ok(())
}

/// The seed of this unit: the unit's seed mixed with its job's name, so units of different
/// jobs (and the same unit's retries alike) play different (respectively the same) games.
fn seed_of(unit: &ringrift_contract::Unit) -> u64 {
    unit.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hash(&unit.job)
}

/// A model named by the parameters, read from the input directory.
fn model_input(contract: &Contract, name: &str) -> Result<Net, String> {
    if !crate::plain_name(name) {
        return Err(format!("model name {name:?} is not a plain file name"));
    }
    let path = contract.input_dir.join(name);
    if !path.is_file() {
        return Err(format!(
            "input model {name} is missing from the input directory {}",
            contract.input_dir.display()
        ));
    }
    Net::load(&path)
}

fn write_json(path: &Path, value: &Value) -> Result<(), String> {
    std::fs::write(path, value.to_string()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Runs the contract's role; progress lines and logs go to `out`.
///
/// # Errors
/// A message naming what is wrong (bad parameters, a missing or malformed input, a failed
/// write).
pub fn run(contract: &Contract, out: &mut dyn Write) -> Result<(), String> {
    check_game(contract.params.game())?;
    std::fs::create_dir_all(&contract.output_dir)
        .map_err(|e| format!("cannot create {}: {e}", contract.output_dir.display()))?;
    let mut reporter = Reporter { out, last: None };
    match &contract.params {
        Params::Selfplay(p) => selfplay(contract, p, &mut reporter),
        Params::Training(p) => training(contract, p, &mut reporter),
        Params::Gauntlet(p) => gauntlet(contract, p, &mut reporter),
    }
}

/// Plays one selfplay game.
pub fn selfplay_game(net: Option<&Net>, simulations: u32, rng: &mut Rng, search: &mut Search) -> GameRecord {
    let mut board = Board::new();
    let mut record = GameRecord {
        moves: Vec::new(),
        visits: Vec::new(),
        result: 0,
    };
    loop {
        if let Some(outcome) = board.outcome() {
            record.result = result_of(outcome);
            return record;
        }
        let visits = search.run(net, &board, simulations, Some(Noise { rng, fraction: NOISE }));
        let col = if board.moves() < SAMPLED_PLIES {
            sample_visits(&visits, rng)
        } else {
            most_visited(&visits)
        };
        record.moves.push(u8::try_from(col).unwrap_or(0));
        record.visits.push(visits);
        board.play(col);
    }
}

#[allow(clippy::cast_precision_loss)] // counts
fn selfplay(contract: &Contract, p: &SelfplayParams, reporter: &mut Reporter<'_>) -> Result<(), String> {
    let games = p.games;
    let simulations = p.simulations.clamp(1, 100_000);
    let net = p.model.as_deref().map(|m| model_input(contract, m)).transpose()?;
    let mut rng = Rng::derive(seed_of(&p.unit), "selfplay");
    let mut search = Search::default();
    let path = contract.output_dir.join(format!("games-{}.jsonl", contract.task));
    let mut lines = String::new();
    let started = Instant::now();
    let mut tally = [0u64; 3];
    let mut moves = 0u64;
    for done in 1..=games {
        let record = selfplay_game(net.as_ref(), simulations, &mut rng, &mut search);
        tally[usize::try_from(record.result + 1).unwrap_or(1)] += 1;
        moves += record.moves.len() as u64;
        lines.push_str(&serde_json::to_string(&record).map_err(|e| e.to_string())?);
        lines.push('\n');
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        // Data-quality figures (a loop's training gates can read them): the share of drawn
        // games and the mean game length in moves.
        reporter.report(
            &Report::progress(done, games, "games")
                .metric("games_per_s", rate)
                .metric("draw_rate", tally[1] as f64 / done as f64)
                .metric("mean_moves", moves as f64 / done as f64),
            done == games,
        );
    }
    std::fs::write(&path, lines).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    write_json(
        &contract.output_dir.join("result.json"),
        &json!({"games": games, "firstWins": tally[2], "secondWins": tally[0], "draws": tally[1],
                "model": p.model}),
    )
}

/// Whether a file name is a game record file (`*.jsonl`).
fn is_games_file(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
}

/// The newest games of the inputs, up to the window: files in the order the parameters list
/// them (newest first), else every `*.jsonl` by name, newest name first.
fn window(contract: &Contract, p: &TrainingParams) -> Result<(Vec<(u64, Sample)>, u64), String> {
    let max_games = p.window.games;
    let max_positions = p.window.positions;
    let names: Vec<String> = if let Some(list) = &p.inputs {
        list.clone()
    } else {
        let mut names: Vec<String> = std::fs::read_dir(&contract.input_dir)
            .map_err(|e| format!("cannot read {}: {e}", contract.input_dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_games_file(n))
            .collect();
        names.sort_unstable_by(|a, b| b.cmp(a));
        names
    };
    let mut samples = Vec::new();
    let mut games = 0u64;
    'files: for name in names.iter().filter(|n| is_games_file(n)) {
        if !crate::plain_name(name) {
            return Err(format!("input name {name:?} is not a plain file name"));
        }
        let path = contract.input_dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read input {name}: {e}"))?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            if max_games.is_some_and(|m| games >= m)
                || max_positions.is_some_and(|m| samples.len() as u64 >= m)
            {
                break 'files;
            }
            let record: GameRecord = serde_json::from_str(line)
                .map_err(|e| format!("input {name}, line {}: not a game record: {e}", i + 1))?;
            let positions = record
                .samples()
                .map_err(|e| format!("input {name}, line {}: {e}", i + 1))?;
            samples.extend(positions.into_iter().map(|s| (games, s)));
            games += 1;
        }
    }
    if samples.is_empty() {
        return Err("no games in the inputs: training needs at least one recorded game".into());
    }
    Ok((samples, games))
}

/// The training positions and the held-out ones: every tenth game's, when there are ten games.
fn split_holdout(all: Vec<(u64, Sample)>, games: u64) -> (Vec<Sample>, Vec<Sample>) {
    let mut samples = Vec::with_capacity(all.len());
    let mut holdout = Vec::new();
    for (game, sample) in all {
        if games >= 10 && game % 10 == 9 {
            holdout.push(sample);
        } else {
            samples.push(sample);
        }
    }
    (samples, holdout)
}

/// The checkpoint `RINGRIFT_RESUME_FROM` names, read and announced in the log.
fn resume_point(
    contract: &Contract,
    steps: u64,
    reporter: &mut Reporter<'_>,
) -> Result<Option<crate::train::Checkpoint>, String> {
    let Some(path) = &contract.resume_from else {
        return Ok(None);
    };
    let c = crate::train::Checkpoint::load(path)?;
    let _ = writeln!(
        reporter.out,
        "resuming from step {} of {steps} ({})",
        c.step,
        path.display()
    );
    Ok(Some(c))
}

/// Steps between checkpoints: `hyperparameters.extra.checkpointEvery`, else a quarter of the
/// steps (0: none).
fn checkpoint_every(hp: &ringrift_contract::Hyperparameters, steps: u64) -> Result<u64, String> {
    match hp.extra.get("checkpointEvery") {
        None => Ok((steps / 4).max(1)),
        Some(v) => v.parse::<u64>().map_err(|_| {
            format!("hyperparameters.extra.checkpointEvery must be a number of steps, not {v:?}")
        }),
    }
}

#[allow(clippy::cast_precision_loss)] // a count of games, as a metric
fn training(contract: &Contract, p: &TrainingParams, reporter: &mut Reporter<'_>) -> Result<(), String> {
    let hp = &p.hyperparameters;
    let steps = hp.steps;
    let batch_size = usize::try_from(hp.batch_size.clamp(1, 65_536)).unwrap_or(256);
    #[allow(clippy::cast_possible_truncation)] // a learning rate
    let learning_rate = hp.learning_rate as f32;
    #[allow(clippy::cast_possible_truncation)]
    let weight_decay = hp.weight_decay as f32;
    let hidden = match hp.extra.get("hidden") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|h| (1..=4096).contains(h))
                .ok_or_else(|| format!("hyperparameters.extra.hidden must be 1 to 4096, not {v:?}"))?,
        ),
    };
    let seed = seed_of(&p.unit);
    let (all, games) = window(contract, p)?;
    // Every tenth game (when there are ten) is held out: the loss on it says how the model
    // does on games it did not train on (`holdout_loss`, which a promotion gate can read).
    let (samples, holdout) = split_holdout(all, games);
    let mut net = match &p.base_model {
        Some(name) => {
            let base = model_input(contract, name)?;
            match hidden {
                Some(h) if h != base.hidden => Net::new(h, seed),
                _ => base,
            }
        }
        None => Net::new(hidden.unwrap_or(DEFAULT_HIDDEN), seed),
    };
    let settings = Settings {
        steps,
        batch_size,
        learning_rate,
        weight_decay,
    };
    let positions = samples.len();
    let _ = writeln!(
        reporter.out,
        "training on {positions} positions from the newest {games} games, {steps} steps of {batch_size}"
    );
    // Resuming: an earlier attempt's checkpoint replaces the starting network (the minibatches
    // drawn from here on depend on the step resumed from).
    let resume = resume_point(contract, steps, reporter)?;
    let mut rng = match &resume {
        Some(c) => Rng::derive(seed, &format!("training-from-{}", c.step)),
        None => Rng::derive(seed, "training"),
    };
    let every = checkpoint_every(hp, steps)?;
    let checkpoints = contract.output_dir.join("checkpoints");
    if every > 0 {
        std::fs::create_dir_all(&checkpoints)
            .map_err(|e| format!("cannot create {}: {e}", checkpoints.display()))?;
    }
    let mut last = None;
    let shared = std::cell::RefCell::new(&mut *reporter);
    let mut failed_checkpoint = None;
    crate::train::train_resumable(
        &mut net,
        &samples,
        &settings,
        &mut rng,
        (20, |step, losses: crate::train::Losses| {
            last = Some(losses);
            shared.borrow_mut().report(
                &Report::progress(step, steps, "steps")
                    .metric("loss", losses.total())
                    .metric("policy_loss", losses.policy)
                    .metric("value_loss", losses.value)
                    .metric("window_games", games as f64),
                step == steps,
            );
        }),
        resume,
        (every, |c: &crate::train::Checkpoint| {
            let name = format!("step-{:08}.ckpt", c.step);
            match c.save(&checkpoints.join(&name)) {
                Ok(()) => {
                    let mut announce = Report::progress(c.step, steps, "steps");
                    announce.checkpoint = Some(format!("checkpoints/{name}"));
                    shared.borrow_mut().report(&announce, true);
                }
                Err(e) => failed_checkpoint = Some(e),
            }
        }),
    )?;
    if let Some(e) = failed_checkpoint {
        let _ = writeln!(shared.borrow_mut().out, "a checkpoint was not written: {e}");
    }
    let holdout_loss = (!holdout.is_empty()).then(|| crate::train::evaluate(&net, &holdout).total());
    if let Some(loss) = holdout_loss {
        let _ = writeln!(
            reporter.out,
            "loss on {} held-out positions: {loss:.4}",
            holdout.len()
        );
        reporter.report(
            &Report::progress(steps, steps, "steps").metric("holdout_loss", loss),
            true,
        );
    }
    net.save(&contract.output_dir.join("model.json"))?;
    write_json(
        &contract.output_dir.join("result.json"),
        &json!({"steps": steps, "positions": positions, "windowGames": games,
                "loss": last.map(|l| l.total()), "holdoutLoss": holdout_loss,
                "holdoutPositions": holdout.len(), "hidden": net.hidden}),
    )
}

/// One gauntlet game; `candidate_first` says who opens. Returns the result for the candidate:
/// 1 win, 0 draw, -1 loss.
fn gauntlet_game(
    candidate: &mut Player,
    opponent: &mut Player,
    candidate_first: bool,
    opening: &[usize],
    rng: &mut Rng,
) -> i8 {
    let mut board = Board::new();
    for col in opening {
        if board.outcome().is_none() && board.can_play(*col) {
            board.play(*col);
        }
    }
    loop {
        if let Some(outcome) = board.outcome() {
            let first = result_of(outcome);
            return if candidate_first { first } else { -first };
        }
        let candidate_moves = board.first_to_move() == candidate_first;
        let col = if candidate_moves {
            candidate.choose(&board, rng)
        } else {
            opponent.choose(&board, rng)
        };
        board.play(col);
    }
}

fn gauntlet(contract: &Contract, p: &GauntletParams, reporter: &mut Reporter<'_>) -> Result<(), String> {
    let games = p.games;
    let simulations = p.simulations.clamp(1, 100_000);
    let candidate_name = &p.candidate;
    let mut candidate = Player::search(Some(model_input(contract, candidate_name)?), simulations);
    let opponent = p
        .opponent
        .as_ref()
        .ok_or("params.opponent is required for a gauntlet")?;
    let opponent_name = &opponent.name;
    let details = opponent.details.clone().unwrap_or_default();
    let mut rival = match (&details.model, details.baseline) {
        (Some(model), _) => Player::search(Some(model_input(contract, model)?), simulations),
        (None, Some(Baseline::Random)) => Player::Random,
        (None, Some(Baseline::Heuristic)) => Player::Heuristic,
        (None, None) => return Err("params.opponent.details needs a model or a baseline".into()),
    };
    let seed = seed_of(&p.unit);
    let (mut wins, mut losses, mut draws) = (0u64, 0u64, 0u64);
    for game in 0..games {
        // Each pair of games shares a random opening, with the colours swapped.
        let mut opening_rng = Rng::derive(seed ^ (game / 2), "opening");
        let mut b = Board::new();
        let mut opening = Vec::new();
        for _ in 0..OPENING_PLIES {
            let legal: Vec<usize> = b.legal().collect();
            let col = legal[opening_rng.below(legal.len())];
            opening.push(col);
            b.play(col);
        }
        let mut rng = Rng::derive(seed ^ game, "gauntlet");
        match gauntlet_game(&mut candidate, &mut rival, game % 2 == 0, &opening, &mut rng) {
            1 => wins += 1,
            -1 => losses += 1,
            _ => draws += 1,
        }
        reporter.report(&Report::progress(game + 1, games, "games"), game + 1 == games);
    }
    let _ = writeln!(
        reporter.out,
        "{candidate_name} against {opponent_name}: {wins} won, {losses} lost, {draws} drawn"
    );
    write_json(
        &contract.output_dir.join("result.json"),
        &json!({"wins": wins, "losses": losses, "draws": draws, "opponent": opponent_name,
                "candidate": candidate_name}),
    )
}
