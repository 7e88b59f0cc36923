//! `ringrift logs`: a task's log, from the agent that runs it (its REST API).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use kube::Api;
use ringrift_crds::agent::Agent;
use ringrift_crds::task::Task;

use crate::kubeclient::{self, KubeArgs};

/// Options of `ringrift logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The Task (see `kubectl get rtask`).
    pub task: String,
    /// Its namespace.
    #[arg(short, long, env = "RINGRIFT_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Keep printing new lines until the task ends.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to print first.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
    /// File holding the agents' REST token (`<data-dir>/token` on an agent's node, or the
    /// chart's Secret).
    #[arg(long, env = "RINGRIFT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: PathBuf,
}

/// `host:port` of an `http://` endpoint.
fn authority(endpoint: &str) -> anyhow::Result<&str> {
    let rest = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("the agent's endpoint {endpoint:?} is not an http:// URL"))?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

async fn stream(args: &LogsArgs) -> anyhow::Result<()> {
    let client = kubeclient::client(&args.kube).await?;
    let task = Api::<Task>::namespaced(client.clone(), &args.namespace)
        .get_opt(&args.task)
        .await
        .context("failed to read the Task")?
        .with_context(|| format!("no Task {}/{}", args.namespace, args.task))?;
    let agent_name = task
        .spec
        .agent
        .with_context(|| format!("Task {} is not bound to an agent yet", args.task))?;
    let agent = Api::<Agent>::all(client)
        .get_opt(&agent_name)
        .await
        .context("failed to read the Agent")?
        .with_context(|| format!("no Agent {agent_name}"))?;
    let endpoint = agent
        .status
        .and_then(|s| s.endpoint)
        .with_context(|| format!("agent {agent_name} has not registered an endpoint"))?;
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("failed to read the token file {}", args.token_file.display()))?;
    let address = authority(&endpoint)?;
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("failed to reach agent {agent_name} at {endpoint}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let path = format!(
        "/v1/tasks/{}/{}/logs?tail={}&follow={}",
        args.namespace, args.task, args.tail, args.follow
    );
    let request = Request::get(path)
        .header("host", address)
        .header("authorization", format!("Bearer {}", token.trim()))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let mut body = response.into_body();
    if status != StatusCode::OK {
        let text = body.collect().await?.to_bytes();
        let message = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
        anyhow::bail!("agent {agent_name} answered {status}: {message}");
    }
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.write_all(&data)?;
            out.flush()?;
        }
    }
    Ok(())
}

pub(crate) fn run_logs(args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(stream(args))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(authority("http://10.0.0.1:8770").unwrap(), "10.0.0.1:8770");
        assert_eq!(authority("http://node:8770/").unwrap(), "node:8770");
        assert!(authority("https://node:8770").is_err());
    }
}
