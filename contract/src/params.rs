//! A task's parameters (`RINGRIFT_PARAMS`), per role. Unknown fields are kept out of the way
//! (ignored), so a custom workload can be handed more than these; a field of the wrong type is
//! an error that names it.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a task does (`RINGRIFT_ROLE`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Record games.
    Selfplay,
    /// Fit a model.
    Training,
    /// Play a candidate against an opponent.
    Gauntlet,
}

impl Role {
    /// The name in `RINGRIFT_ROLE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Selfplay => "selfplay",
            Self::Training => "training",
            Self::Gauntlet => "gauntlet",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// The game to play, as the job names it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Game {
    /// Board or variant name, for example `connect4`.
    pub board: String,
    /// Number of players.
    #[serde(default = "two")]
    pub players: u8,
    /// Free-form options (rule variants and the like).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

fn two() -> u8 {
    2
}

/// Where a task stands in its job: every role's parameters carry it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Unit {
    /// The role again (the same as `RINGRIFT_ROLE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The work unit's id within its job.
    #[serde(default)]
    pub work_unit: String,
    /// The unit's index in its job: seed randomness with it (a retry then replays the same
    /// games, other units play others).
    #[serde(default)]
    pub seed: u64,
    /// The job's name.
    #[serde(default)]
    pub job: String,
}

/// Tree-search simulations per move unless the job says otherwise.
pub const DEFAULT_SIMULATIONS: u32 = 64;

fn default_simulations() -> u32 {
    DEFAULT_SIMULATIONS
}

/// A selfplay task's parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SelfplayParams {
    /// Where the task stands in its job.
    #[serde(flatten)]
    pub unit: Unit,
    /// The game.
    #[serde(default)]
    pub game: Option<Game>,
    /// Games to play.
    pub games: u64,
    /// Simulations per move.
    #[serde(default = "default_simulations")]
    pub simulations: u32,
    /// The model that plays (a file of that name in the input directory); none: the
    /// workload's own untrained player.
    #[serde(default)]
    pub model: Option<String>,
    /// The dataset the games go to.
    #[serde(default)]
    pub dataset: Option<String>,
}

/// Optimisation settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hyperparameters {
    /// Optimiser steps.
    #[serde(default = "default_steps")]
    pub steps: u64,
    /// Positions per batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Learning rate.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f64,
    /// L2 weight decay.
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Further settings for the trainer, untouched.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            steps: DEFAULT_STEPS,
            batch_size: DEFAULT_BATCH_SIZE,
            learning_rate: DEFAULT_LEARNING_RATE,
            weight_decay: DEFAULT_WEIGHT_DECAY,
            extra: BTreeMap::new(),
        }
    }
}

/// Optimiser steps unless the job says otherwise.
pub const DEFAULT_STEPS: u64 = 1000;
/// Positions per batch unless the job says otherwise.
pub const DEFAULT_BATCH_SIZE: u32 = 256;
/// Learning rate unless the job says otherwise.
pub const DEFAULT_LEARNING_RATE: f64 = 0.001;
/// L2 weight decay unless the job says otherwise.
pub const DEFAULT_WEIGHT_DECAY: f64 = 0.0001;

fn default_steps() -> u64 {
    DEFAULT_STEPS
}

fn default_batch_size() -> u32 {
    DEFAULT_BATCH_SIZE
}

fn default_learning_rate() -> f64 {
    DEFAULT_LEARNING_RATE
}

fn default_weight_decay() -> f64 {
    DEFAULT_WEIGHT_DECAY
}

/// The newest part of the training data to use; neither set: all of the inputs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// The newest this many games.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub games: Option<u64>,
    /// The newest this many positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<u64>,
}

/// A training task's parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainingParams {
    /// Where the task stands in its job.
    #[serde(flatten)]
    pub unit: Unit,
    /// The game.
    #[serde(default)]
    pub game: Option<Game>,
    /// Optimisation settings.
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
    /// How much of the inputs to train on.
    #[serde(default)]
    pub window: Window,
    /// The model to start from (an input file of that name); none: a fresh one.
    #[serde(default)]
    pub base_model: Option<String>,
    /// The name the trained model will have.
    #[serde(default)]
    pub output_model: Option<String>,
    /// The game files to read, newest first; none: every `*.jsonl` input.
    #[serde(default)]
    pub inputs: Option<Vec<String>>,
}

/// A built-in opponent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Baseline {
    /// Uniformly random legal moves.
    Random,
    /// A fixed hand-written heuristic player.
    Heuristic,
}

/// Who an opponent is: a model (an input file of that name) or a baseline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OpponentDetails {
    /// A model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// A baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// The opponent of one gauntlet task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamedOpponent {
    /// Its name in the results.
    pub name: String,
    /// Who it is.
    #[serde(default)]
    pub details: Option<OpponentDetails>,
}

/// A gauntlet task's parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GauntletParams {
    /// Where the task stands in its job.
    #[serde(flatten)]
    pub unit: Unit,
    /// The game.
    #[serde(default)]
    pub game: Option<Game>,
    /// Games to play.
    pub games: u64,
    /// Simulations per move.
    #[serde(default = "default_simulations")]
    pub simulations: u32,
    /// The candidate model (an input file of that name).
    pub candidate: String,
    /// Every opponent of the job, by name.
    #[serde(default)]
    pub opponents: BTreeMap<String, OpponentDetails>,
    /// The opponent this task plays.
    #[serde(default)]
    pub opponent: Option<NamedOpponent>,
}

/// A task's parameters, by role.
#[derive(Clone, Debug, PartialEq)]
pub enum Params {
    /// Selfplay.
    Selfplay(SelfplayParams),
    /// Training.
    Training(TrainingParams),
    /// Gauntlet.
    Gauntlet(GauntletParams),
}

/// Parameters that do not read as their role's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsError {
    /// The field, as a path (`hyperparameters.steps`); empty for the whole object.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "RINGRIFT_PARAMS: {}", self.message)
        } else {
            write!(f, "RINGRIFT_PARAMS.{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ParamsError {}

fn read<T: DeserializeOwned>(json: &str) -> Result<T, ParamsError> {
    if !json.trim_start().starts_with('{') {
        // A struct would also read from an array of its fields.
        return Err(ParamsError {
            field: String::new(),
            message: "the parameters are a JSON object".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        ParamsError {
            field: if field == "." { String::new() } else { field },
            message: strip_position(&e.into_inner().to_string()),
        }
    })?;
    de.end().map_err(|e| ParamsError {
        field: String::new(),
        message: e.to_string(),
    })?;
    Ok(parsed)
}

/// serde_json's messages end with the position in the text; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

impl Params {
    /// Reads the parameters of a `role` task from their JSON text.
    ///
    /// # Errors
    /// Malformed JSON, a missing required field or a field of the wrong type, named.
    pub fn parse(role: Role, json: &str) -> Result<Self, ParamsError> {
        Ok(match role {
            Role::Selfplay => Self::Selfplay(read(json)?),
            Role::Training => Self::Training(read(json)?),
            Role::Gauntlet => Self::Gauntlet(read(json)?),
        })
    }

    /// Reads the parameters of a `role` task from a JSON value.
    ///
    /// # Errors
    /// As [`Params::parse`].
    pub fn from_value(role: Role, value: &Value) -> Result<Self, ParamsError> {
        Self::parse(role, &value.to_string())
    }

    /// The role these parameters are for.
    pub fn role(&self) -> Role {
        match self {
            Self::Selfplay(_) => Role::Selfplay,
            Self::Training(_) => Role::Training,
            Self::Gauntlet(_) => Role::Gauntlet,
        }
    }

    /// Where the task stands in its job.
    pub fn unit_mut(&mut self) -> &mut Unit {
        match self {
            Self::Selfplay(p) => &mut p.unit,
            Self::Training(p) => &mut p.unit,
            Self::Gauntlet(p) => &mut p.unit,
        }
    }

    /// The game, when named.
    pub fn game(&self) -> Option<&Game> {
        match self {
            Self::Selfplay(p) => p.game.as_ref(),
            Self::Training(p) => p.game.as_ref(),
            Self::Gauntlet(p) => p.game.as_ref(),
        }
    }

    /// The JSON object handed to the workload.
    pub fn to_value(&self) -> Value {
        let value = match self {
            Self::Selfplay(p) => serde_json::to_value(p),
            Self::Training(p) => serde_json::to_value(p),
            Self::Gauntlet(p) => serde_json::to_value(p),
        };
        // Plain data: maps with string keys and finite numbers always serialize.
        value.unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_role_reads_what_the_controller_writes() {
        let selfplay = Params::Selfplay(SelfplayParams {
            unit: Unit {
                role: Some(Role::Selfplay),
                work_unit: "u-3".into(),
                seed: 3,
                job: "sp".into(),
            },
            game: Some(Game {
                board: "connect4".into(),
                players: 2,
                options: BTreeMap::new(),
            }),
            games: 10,
            simulations: 32,
            model: None,
            dataset: Some("d".into()),
        });
        let value = selfplay.to_value();
        assert_eq!(
            value,
            json!({"role": "selfplay", "workUnit": "u-3", "seed": 3, "job": "sp",
                   "game": {"board": "connect4", "players": 2}, "games": 10, "simulations": 32,
                   "model": null, "dataset": "d"})
        );
        assert_eq!(Params::from_value(Role::Selfplay, &value).unwrap(), selfplay);

        let gauntlet = json!({"games": 4, "candidate": "m2",
            "opponents": {"best": {"model": "m1"}, "rand": {"baseline": "random"}},
            "opponent": {"name": "rand", "details": {"baseline": "random"}}});
        let Params::Gauntlet(g) = Params::from_value(Role::Gauntlet, &gauntlet).unwrap() else {
            panic!("not a gauntlet");
        };
        assert_eq!(g.simulations, DEFAULT_SIMULATIONS);
        assert_eq!(g.opponents["best"].model.as_deref(), Some("m1"));
        let details = g.opponent.as_ref().and_then(|o| o.details.clone()).unwrap();
        assert_eq!(details.baseline, Some(Baseline::Random));
        let back = Params::Gauntlet(g).to_value();
        assert_eq!(back["opponents"]["rand"], json!({"baseline": "random"}));
        assert_eq!(back["games"], 4);
    }

    #[test]
    fn training_defaults_are_the_documented_ones() {
        let Params::Training(t) = Params::parse(Role::Training, "{}").unwrap() else {
            panic!("not training");
        };
        assert_eq!(t.hyperparameters, Hyperparameters::default());
        assert_eq!(t.hyperparameters.steps, 1000);
        assert_eq!(t.window, Window::default());
        assert_eq!(t.inputs, None);
    }

    #[test]
    fn errors_name_the_field() {
        let e = Params::parse(Role::Training, r#"{"hyperparameters": {"steps": "many"}}"#).unwrap_err();
        assert_eq!(e.field, "hyperparameters.steps");
        assert!(
            e.to_string()
                .starts_with("RINGRIFT_PARAMS.hyperparameters.steps: invalid type"),
            "{e}"
        );
        let e = Params::parse(Role::Selfplay, r#"{"simulations": 3}"#).unwrap_err();
        assert!(e.to_string().contains("missing field `games`"), "{e}");
        let e = Params::parse(
            Role::Gauntlet,
            r#"{"games": 2, "candidate": "c",
            "opponent": {"name": "x", "details": {"baseline": "perfect"}}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "opponent.details.baseline");
        assert!(e.message.contains("unknown variant `perfect`"), "{e}");
        let e = Params::parse(Role::Selfplay, "{\"games\": 1} x").unwrap_err();
        assert_eq!(e.field, "");
        assert!(Params::parse(Role::Selfplay, "not json").is_err());
        let e = Params::parse(Role::Selfplay, "[3]").unwrap_err();
        assert_eq!(e.to_string(), "RINGRIFT_PARAMS: the parameters are a JSON object");
    }

    #[test]
    fn unknown_fields_are_left_for_custom_workloads() {
        let p = Params::parse(Role::Selfplay, r#"{"games": 1, "temperature": 0.5}"#).unwrap();
        assert_eq!(p.role(), Role::Selfplay);
    }

    #[test]
    fn roles_read_and_print_as_in_the_environment() {
        for role in [Role::Selfplay, Role::Training, Role::Gauntlet] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!(
            "play"
                .parse::<Role>()
                .unwrap_err()
                .contains("selfplay, training, gauntlet")
        );
    }
}
