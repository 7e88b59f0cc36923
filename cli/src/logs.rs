//! `ringrift logs`: a task's log, from the agent that runs it: with `--token-file`, straight
//! from its REST API over TLS (trusting exactly the certificate whose fingerprint the agent's
//! `Agent` status publishes, read through the API); without, through the API server (`GET
//! …/tasks/{name}/log`, as `get` on `tasks/log`), which passes it from the agent over the
//! connection the agent keeps to it: that reaches agents nobody can connect to (NAT), and needs
//! no agent token. Only `ringrift server` (and `ringrift up`) relay; against a Kubernetes
//! cluster, give `--token-file`.

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
    /// chart's Secret): read the log from the agent directly. Without it, through the API
    /// server (`ringrift server`, `ringrift up`).
    #[arg(long, env = "RINGRIFT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Copies a response body to standard output as it arrives.
async fn print_body<B>(mut body: B) -> anyhow::Result<()>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut out = std::io::stdout().lock();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            out.write_all(&data)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// The message of an error body (a `Status` or the agent's JSON), else its text.
fn message_of(text: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(text).into_owned())
}

/// The log through the API server.
async fn through_server(args: &LogsArgs, client: kube::Client) -> anyhow::Result<()> {
    let path = format!(
        "/apis/ringrift.ai/v1alpha1/namespaces/{}/tasks/{}/log?tailLines={}&follow={}",
        args.namespace, args.task, args.tail, args.follow
    );
    let request = hyper::Request::get(path).body(kube::client::Body::empty())?;
    let response = client
        .send(request)
        .await
        .context("failed to ask the API server for the log")?;
    let status = response.status();
    if status != StatusCode::OK {
        let text = response.into_body().collect().await?.to_bytes();
        anyhow::bail!(
            "the API server answered {status}: {}{}",
            message_of(&text),
            if status == StatusCode::NOT_FOUND {
                " (a Kubernetes cluster does not relay logs: give --token-file to read them from the agent)"
            } else {
                ""
            }
        );
    }
    print_body(response.into_body()).await
}

/// `host:port` of an `https://` endpoint.
fn authority(endpoint: &str) -> anyhow::Result<&str> {
    let rest = endpoint
        .strip_prefix("https://")
        .with_context(|| format!("the agent's endpoint {endpoint:?} is not an https:// URL"))?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

async fn stream(args: &LogsArgs) -> anyhow::Result<()> {
    let client = kubeclient::client(&args.kube).await?;
    let Some(token_file) = &args.token_file else {
        return through_server(args, client).await;
    };
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
    let status = agent.status.unwrap_or_default();
    let endpoint = status
        .endpoint
        .with_context(|| format!("agent {agent_name} has not registered an endpoint"))?;
    let fingerprint = status
        .certificate_fingerprint
        .filter(|f| ringrift_tls::pin::valid(f))
        .with_context(|| format!("agent {agent_name} publishes no certificate fingerprint to trust it by"))?;
    let token = crate::tokens::read(token_file, "--token-file")?;
    let address = authority(&endpoint)?;
    let config = ringrift_tls::pin::client_config(&fingerprint)?;
    let stream = ringrift_tls::pin::connect(address, config, std::time::Duration::from_secs(10))
        .await
        .map_err(|e| match ringrift_tls::trust::classify(&e) {
            Some(f) => anyhow::anyhow!(
                "cannot trust agent {agent_name} at {endpoint} ({}): {}; its Agent status pins {fingerprint}",
                f.reason.label(),
                f.detail
            ),
            None => anyhow::anyhow!("failed to reach agent {agent_name} at {endpoint}: {e}"),
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let path = format!(
        "/v1/tasks/{}/{}/logs?tail={}&follow={}",
        args.namespace, args.task, args.tail, args.follow
    );
    let request = Request::get(path)
        .header("host", address)
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body();
    if status != StatusCode::OK {
        let text = body.collect().await?.to_bytes();
        anyhow::bail!("agent {agent_name} answered {status}: {}", message_of(&text));
    }
    print_body(body).await
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
        assert_eq!(authority("https://10.0.0.1:8770").unwrap(), "10.0.0.1:8770");
        assert_eq!(authority("https://node:8770/").unwrap(), "node:8770");
        assert!(authority("http://node:8770").is_err());
    }
}
