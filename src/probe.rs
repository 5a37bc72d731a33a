//! `gatehouse health [--url URL]`: one GET, its answer as the exit code, for container
//! HEALTHCHECKs and Kubernetes exec probes where there is no curl (the image has no shell).

use std::time::Duration;

/// How long the answer may take; a HEALTHCHECK's own timeout is usually longer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The health endpoint of this container's gateway on its main listener (`PORT` as in
/// environment mode). `/ready` is the admin listener's, which a container may not expose.
pub fn default_url() -> String {
    let port = std::env::var("PORT").ok().filter(|p| p.parse::<u16>().is_ok());
    format!("http://127.0.0.1:{}/health", port.as_deref().unwrap_or("8080"))
}

/// GETs `url`: Ok with the status line when it answers 2xx within [`TIMEOUT`], Err saying
/// what it got otherwise.
pub fn check(url: &str) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let line = format!("{url}: {status}");
        if status.is_success() {
            Ok(line)
        } else {
            Err(line)
        }
    })
}
