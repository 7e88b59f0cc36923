//! `ringrift workload`: the built-in demo workload (crate `ringrift-demo`) in one role, as the
//! agent starts it under the workload contract. Every option falls back to the contract's
//! environment variable, so it also runs by hand.

use std::path::PathBuf;
use std::process::ExitCode;

/// Options of `ringrift workload`; the agent passes them as `RINGRIFT_*` variables.
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// selfplay, training or gauntlet.
    #[arg(long, env = "RINGRIFT_ROLE")]
    pub role: ringrift_demo::Role,
    /// The task's parameters (JSON): game, games, seed, simulations, model, hyperparameters, …
    #[arg(long, env = "RINGRIFT_PARAMS", default_value = "{}")]
    pub params: String,
    /// Where the input artifacts are, one file each, named by their name.
    #[arg(long, env = "RINGRIFT_INPUT_DIR", default_value = "input")]
    pub input_dir: PathBuf,
    /// Where to leave the outputs.
    #[arg(long, env = "RINGRIFT_OUTPUT_DIR", default_value = "output")]
    pub output_dir: PathBuf,
    /// The task's name (names the output files).
    #[arg(long, env = "RINGRIFT_TASK", default_value = "task")]
    pub task: String,
    /// A checkpoint an earlier attempt wrote (training): go on from it.
    #[arg(long, env = "RINGRIFT_RESUME_FROM", value_name = "FILE")]
    pub resume_from: Option<PathBuf>,
}

/// Exit status of a workload that was given something it cannot use.
const USER_ERROR: u8 = 2;

/// Runs one role; prints `@ringrift` progress lines on stdout.
pub fn run(args: WorkloadArgs) -> ExitCode {
    let params = match ringrift_demo::Params::parse(args.role, &args.params) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ringrift workload: {e} (--params)");
            return ExitCode::from(USER_ERROR);
        }
    };
    let contract = ringrift_demo::Contract {
        task: args.task,
        params,
        input_dir: args.input_dir,
        output_dir: args.output_dir,
        resume_from: args.resume_from,
    };
    match ringrift_demo::run(&contract, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringrift workload: {e}");
            ExitCode::from(USER_ERROR)
        }
    }
}
