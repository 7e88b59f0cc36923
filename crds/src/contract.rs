//! The API's spelling of a game, a window, hyperparameters, a baseline and a role, turned into
//! what the workload contract (`ringrift-contract`) hands a task.

use ringrift_contract as contract;

use crate::common::GameSpec;
use crate::gauntlet::Baseline;
use crate::task::Role;
use crate::training::{Hyperparameters, TrainingWindow};

impl From<&GameSpec> for contract::Game {
    fn from(g: &GameSpec) -> Self {
        Self {
            board: g.board.clone(),
            players: g.players,
            options: g.options.clone(),
        }
    }
}

impl From<&contract::Game> for GameSpec {
    fn from(g: &contract::Game) -> Self {
        Self {
            board: g.board.clone(),
            players: g.players,
            options: g.options.clone(),
        }
    }
}

impl From<&Hyperparameters> for contract::Hyperparameters {
    fn from(h: &Hyperparameters) -> Self {
        Self {
            steps: h.steps,
            batch_size: h.batch_size,
            learning_rate: h.learning_rate,
            weight_decay: h.weight_decay,
            extra: h.extra.clone(),
        }
    }
}

impl From<&contract::Hyperparameters> for Hyperparameters {
    fn from(h: &contract::Hyperparameters) -> Self {
        Self {
            steps: h.steps,
            batch_size: h.batch_size,
            learning_rate: h.learning_rate,
            weight_decay: h.weight_decay,
            extra: h.extra.clone(),
        }
    }
}

impl From<&TrainingWindow> for contract::Window {
    fn from(w: &TrainingWindow) -> Self {
        Self {
            games: w.games,
            positions: w.positions,
        }
    }
}

impl From<Baseline> for contract::Baseline {
    fn from(b: Baseline) -> Self {
        match b {
            Baseline::Random => Self::Random,
            Baseline::Heuristic => Self::Heuristic,
        }
    }
}

impl Role {
    /// The role the workload is told, for a task that runs one (a copy runs none).
    pub fn workload(self) -> Option<contract::Role> {
        match self {
            Self::Selfplay => Some(contract::Role::Selfplay),
            Self::Training => Some(contract::Role::Training),
            Self::Gauntlet => Some(contract::Role::Gauntlet),
            Self::Copy => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The contract's defaults are the API's: a job that sets nothing hands the workload what
    /// the CRD documents.
    #[test]
    fn defaults_agree() {
        // What the API defaults a job that sets no hyperparameters to.
        let api: Hyperparameters = serde_json::from_str("{}").unwrap();
        assert_eq!(
            contract::Hyperparameters::from(&api),
            contract::Hyperparameters::default()
        );
        assert_eq!(api, Hyperparameters::default());
        let game: GameSpec = serde_json::from_str(r#"{"board": "connect4"}"#).unwrap();
        let handed: contract::Game = serde_json::from_str(r#"{"board": "connect4"}"#).unwrap();
        assert_eq!(contract::Game::from(&game), handed);
        assert_eq!(GameSpec::from(&handed), game);
    }

    /// Each converted value serializes as the API object did: a workload written against the
    /// API's JSON reads the same fields.
    #[test]
    fn shapes_agree() {
        let game = GameSpec {
            board: "hex8".into(),
            players: 3,
            options: BTreeMap::from([("swap".into(), "on".into())]),
        };
        assert_eq!(
            serde_json::to_value(contract::Game::from(&game)).unwrap(),
            serde_json::to_value(&game).unwrap()
        );
        let window = TrainingWindow {
            games: Some(5),
            positions: None,
        };
        assert_eq!(
            serde_json::to_value(contract::Window::from(&window)).unwrap(),
            serde_json::to_value(&window).unwrap()
        );
        let hp = Hyperparameters::default();
        assert_eq!(
            serde_json::to_value(contract::Hyperparameters::from(&hp)).unwrap(),
            serde_json::to_value(&hp).unwrap()
        );
        for (b, r) in [
            (Baseline::Random, Role::Selfplay),
            (Baseline::Heuristic, Role::Gauntlet),
        ] {
            assert_eq!(
                serde_json::to_value(contract::Baseline::from(b)).unwrap(),
                serde_json::to_value(b).unwrap()
            );
            assert_eq!(
                serde_json::to_value(r.workload().unwrap()).unwrap(),
                serde_json::to_value(r).unwrap()
            );
        }
        assert_eq!(Role::Training.workload(), Some(contract::Role::Training));
        assert_eq!(Role::Copy.workload(), None, "a copy runs no workload");
    }
}
