//! `acrpull cache info|prune`: JSON on stdout.

use std::process::ExitCode;

use crate::cli::args::CacheCommand;
use crate::cli::stdout;

pub fn run(command: CacheCommand) -> anyhow::Result<ExitCode> {
    let (dir, prune) = match command {
        CacheCommand::Info(dir) => (dir, None),
        CacheCommand::Prune(args) => {
            let policy = args.policy();
            (args.dir, Some(policy))
        }
    };
    let dir = dir
        .cache_dir
        .or_else(|| acrpull::cache::BlobCache::default_dir(|name| std::env::var_os(name)))
        .ok_or_else(|| {
            acrpull::Error::Usage("no cache directory: set --cache-dir or HOME".into())
        })?;
    let cache = acrpull::cache::BlobCache::open(&dir).map_err(acrpull::Error::from)?;
    let summary = match prune {
        None => serde_json::json!({"cacheDir": dir, "held": cache.usage()}),
        Some(policy) => {
            let removed = cache.prune(&policy);
            let staging = cache.remove_abandoned_staging();
            serde_json::json!({
                "cacheDir": dir,
                "removed": removed,
                "removedStagingDirs": staging,
                "held": cache.usage(),
            })
        }
    };
    stdout::json_pretty(&summary)?;
    Ok(ExitCode::SUCCESS)
}
