//! The three roles under the workload contract: read `RINGRIFT_*`, play or train, report
//! `@ringrift` progress lines on stdout, and leave outputs (and `result.json`) in the output
//! directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::game::Board;
use crate::mcts::{Noise, Search, most_visited, sample_visits};
use crate::net::{DEFAULT_HIDDEN, Net};
use crate::players::Player;
use crate::record::{GameRecord, Sample, result_of};
use crate::rng::{Rng, hash};
use crate::train::{Settings, train};

/// Plies played by sampling the search's visits in selfplay (for variety), before playing its
/// best move.
const SAMPLED_PLIES: usize = 10;
/// Share of the root prior replaced by noise in selfplay.
const NOISE: f32 = 0.25;
/// Random plies opening each pair of gauntlet games.
const OPENING_PLIES: usize = 2;
/// Least time between two progress reports.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// The role a task plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Record games with the best model.
    Selfplay,
    /// Fit a new model.
    Training,
    /// Play a candidate against an opponent.
    Gauntlet,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "selfplay" => Ok(Self::Selfplay),
            "training" => Ok(Self::Training),
            "gauntlet" => Ok(Self::Gauntlet),
            other => Err(format!(
                "role {other:?} is not one of selfplay, training, gauntlet"
            )),
        }
    }
}

/// What the agent hands a task (DESIGN.md section 6).
#[derive(Debug, Clone)]
pub struct Contract {
    /// `RINGRIFT_ROLE`.
    pub role: Role,
    /// `RINGRIFT_TASK`: names the output files.
    pub task: String,
    /// `RINGRIFT_PARAMS`.
    pub params: Value,
    /// `RINGRIFT_INPUT_DIR`.
    pub input_dir: PathBuf,
    /// `RINGRIFT_OUTPUT_DIR`.
    pub output_dir: PathBuf,
}

impl Contract {
    /// Reads the contract's variables.
    ///
    /// # Errors
    /// Naming the variable that is missing or malformed.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
        let params = var("RINGRIFT_PARAMS")?;
        Ok(Self {
            role: var("RINGRIFT_ROLE")?
                .parse()
                .map_err(|e| format!("RINGRIFT_ROLE: {e}"))?,
            task: std::env::var("RINGRIFT_TASK").unwrap_or_else(|_| "task".into()),
            params: serde_json::from_str(&params).map_err(|e| format!("RINGRIFT_PARAMS is not JSON: {e}"))?,
            input_dir: var("RINGRIFT_INPUT_DIR")?.into(),
            output_dir: var("RINGRIFT_OUTPUT_DIR")?.into(),
        })
    }
}

/// Reports progress lines, at most every [`REPORT_EVERY`] unless told to flush.
struct Reporter<'a> {
    out: &'a mut dyn Write,
    last: Option<Instant>,
}

impl Reporter<'_> {
    fn report(&mut self, line: &Value, force: bool) {
        if !force && self.last.is_some_and(|t| t.elapsed() < REPORT_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let _ = writeln!(self.out, "@ringrift {line}");
        let _ = self.out.flush();
    }
}

fn get_u64(params: &Value, key: &str) -> Result<Option<u64>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("params.{key} must be a non-negative integer, not {v}")),
    }
}

fn get_str<'a>(params: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or_else(|| format!("params.{key} must be a string, not {v}")),
    }
}

/// Checks that the game is the one this workload plays.
fn check_game(params: &Value) -> Result<(), String> {
    let game = params.get("game").cloned().unwrap_or(Value::Null);
    let board = game.get("board").and_then(Value::as_str).unwrap_or("connect4");
    if board != "connect4" {
        return Err(format!(
            "params.game.board: the demo workload plays \"connect4\", not {board:?}"
        ));
    }
    let players = game.get("players").and_then(Value::as_u64).unwrap_or(2);
    if players != 2 {
        return Err(format!(
            "params.game.players: connect4 has 2 players, not {players}"
        ));
    }
    Ok(())
}

/// The seed of this unit: the unit's seed mixed with its job's name, so units of different
/// jobs (and the same unit's retries alike) play different (respectively the same) games.
fn seed_of(params: &Value) -> Result<u64, String> {
    let seed = get_u64(params, "seed")?.unwrap_or(0);
    let job = get_str(params, "job")?.unwrap_or("");
    Ok(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hash(job))
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
    check_game(&contract.params)?;
    std::fs::create_dir_all(&contract.output_dir)
        .map_err(|e| format!("cannot create {}: {e}", contract.output_dir.display()))?;
    let mut reporter = Reporter { out, last: None };
    match contract.role {
        Role::Selfplay => selfplay(contract, &mut reporter),
        Role::Training => training(contract, &mut reporter),
        Role::Gauntlet => gauntlet(contract, &mut reporter),
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
fn selfplay(contract: &Contract, reporter: &mut Reporter<'_>) -> Result<(), String> {
    let p = &contract.params;
    let games = get_u64(p, "games")?.ok_or("params.games is required for selfplay")?;
    let simulations = u32::try_from(get_u64(p, "simulations")?.unwrap_or(64).clamp(1, 100_000)).unwrap_or(64);
    let net = get_str(p, "model")?
        .map(|m| model_input(contract, m))
        .transpose()?;
    let mut rng = Rng::derive(seed_of(p)?, "selfplay");
    let mut search = Search::default();
    let path = contract.output_dir.join(format!("games-{}.jsonl", contract.task));
    let mut lines = String::new();
    let started = Instant::now();
    let mut tally = [0u64; 3];
    for done in 1..=games {
        let record = selfplay_game(net.as_ref(), simulations, &mut rng, &mut search);
        tally[usize::try_from(record.result + 1).unwrap_or(1)] += 1;
        lines.push_str(&serde_json::to_string(&record).map_err(|e| e.to_string())?);
        lines.push('\n');
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        reporter.report(
            &json!({"done": done, "total": games, "unit": "games", "metrics": {"games_per_s": rate}}),
            done == games,
        );
    }
    std::fs::write(&path, lines).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    write_json(
        &contract.output_dir.join("result.json"),
        &json!({"games": games, "firstWins": tally[2], "secondWins": tally[0], "draws": tally[1],
                "model": get_str(p, "model")?}),
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
fn window(contract: &Contract) -> Result<(Vec<Sample>, u64), String> {
    let p = &contract.params;
    let window = p.get("window").cloned().unwrap_or(Value::Null);
    let max_games = get_u64(&window, "games")?;
    let max_positions = get_u64(&window, "positions")?;
    let names: Vec<String> = if let Some(list) = p.get("inputs").and_then(Value::as_array) {
        list.iter().filter_map(Value::as_str).map(str::to_owned).collect()
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
            samples.extend(positions);
            games += 1;
        }
    }
    if samples.is_empty() {
        return Err("no games in the inputs: training needs at least one recorded game".into());
    }
    Ok((samples, games))
}

fn training(contract: &Contract, reporter: &mut Reporter<'_>) -> Result<(), String> {
    let p = &contract.params;
    let hp = p.get("hyperparameters").cloned().unwrap_or(Value::Null);
    let steps = get_u64(&hp, "steps")?.unwrap_or(1000);
    let batch_size =
        usize::try_from(get_u64(&hp, "batchSize")?.unwrap_or(256).clamp(1, 65_536)).unwrap_or(256);
    #[allow(clippy::cast_possible_truncation)] // a learning rate
    let learning_rate = hp.get("learningRate").and_then(Value::as_f64).unwrap_or(0.001) as f32;
    #[allow(clippy::cast_possible_truncation)]
    let weight_decay = hp.get("weightDecay").and_then(Value::as_f64).unwrap_or(0.0001) as f32;
    let hidden = match hp.get("extra").and_then(|e| e.get("hidden")) {
        None => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|h| (1..=4096).contains(h))
                .ok_or_else(|| format!("hyperparameters.extra.hidden must be 1 to 4096, not {v}"))?,
        ),
    };
    let seed = seed_of(p)?;
    let (samples, games) = window(contract)?;
    let mut net = match get_str(p, "baseModel")? {
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
    let mut rng = Rng::derive(seed, "training");
    let mut last = None;
    train(&mut net, &samples, &settings, &mut rng, 20, |step, losses| {
        last = Some(losses);
        reporter.report(
            &json!({"done": step, "total": steps, "unit": "steps", "metrics": {
                "loss": losses.total(), "policy_loss": losses.policy, "value_loss": losses.value,
                "window_games": games}}),
            step == steps,
        );
    })?;
    net.save(&contract.output_dir.join("model.json"))?;
    write_json(
        &contract.output_dir.join("result.json"),
        &json!({"steps": steps, "positions": positions, "windowGames": games,
                "loss": last.map(|l| l.total()), "hidden": net.hidden}),
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

fn gauntlet(contract: &Contract, reporter: &mut Reporter<'_>) -> Result<(), String> {
    let p = &contract.params;
    let games = get_u64(p, "games")?.ok_or("params.games is required for a gauntlet")?;
    let simulations = u32::try_from(get_u64(p, "simulations")?.unwrap_or(64).clamp(1, 100_000)).unwrap_or(64);
    let candidate_name = get_str(p, "candidate")?.ok_or("params.candidate is required for a gauntlet")?;
    let mut candidate = Player::search(Some(model_input(contract, candidate_name)?), simulations);
    let opponent = p
        .get("opponent")
        .ok_or("params.opponent is required for a gauntlet")?;
    let opponent_name = get_str(opponent, "name")?.unwrap_or("opponent").to_owned();
    let details = opponent.get("details").cloned().unwrap_or(Value::Null);
    let mut rival = match (get_str(&details, "model")?, get_str(&details, "baseline")?) {
        (Some(model), _) => Player::search(Some(model_input(contract, model)?), simulations),
        (None, Some("random")) => Player::Random,
        (None, Some("heuristic")) => Player::Heuristic,
        (None, Some(other)) => {
            return Err(format!(
                "params.opponent.details.baseline: {other:?} is not random or heuristic"
            ));
        }
        (None, None) => return Err("params.opponent.details needs a model or a baseline".into()),
    };
    let seed = seed_of(p)?;
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
        reporter.report(
            &json!({"done": game + 1, "total": games, "unit": "games"}),
            game + 1 == games,
        );
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
