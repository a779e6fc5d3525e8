//! `dsession policy`: check a component, run the conformance kit on it,
//! and start a new policy crate from the starter.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use dsession::kit::{Kit, Verdict};
use dsession::{Limits, Policy, SessionManager};
use dsession_service::LimitsConfig;
use serde_json::json;

use super::Output;
use crate::flags::{CompileCacheArgs, PolicyConfigArgs, StoreArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Load and validate a policy component, run its self-check on an
    /// empty in-memory store, and say what it exports and which settings
    /// (`[policy.config]` keys) it reads.
    Check {
        /// The component, a `.wasm` file, or a built-in policy's name.
        file: PathBuf,
        #[command(flatten)]
        policy_config: PolicyConfigArgs,
        #[command(flatten)]
        compile_cache: CompileCacheArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run the conformance kit on a policy: the contract every policy
    /// keeps, one line per case; exits 1 when a case fails. On the
    /// in-memory store unless a store is named.
    Test {
        /// The component, a `.wasm` file, or a built-in policy's name.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        policy_config: PolicyConfigArgs,
        #[command(flatten)]
        compile_cache: CompileCacheArgs,
        /// Linear memory in MiB past which a warm instance is replaced, as
        /// `limits.policy_instance_max_memory_mib`: a policy on an
        /// interpreter needs more than the default, or every call of the
        /// run instantiates it anew.
        #[arg(long, default_value_t = dsession::InstanceReuse::DEFAULT_MAX_MEMORY_BYTES >> 20)]
        policy_instance_max_memory_mib: usize,
    },
    /// Write a new policy crate at DIR/NAME: a working starter policy on
    /// the SDK, a test that runs the conformance kit, and a README.
    New {
        /// The crate's name: lowercase letters, digits, `-` and `_`,
        /// starting with a letter.
        name: String,
        /// The directory to create it in.
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// A local checkout of the SDK (its `guest/sdk` directory) to
        /// depend on instead of the published crate.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

impl PolicyCommand {
    pub(crate) fn wants_json(&self) -> bool {
        matches!(self, Self::Check { json: true, .. })
    }
}

pub(crate) async fn run(command: PolicyCommand) -> anyhow::Result<Output> {
    match command {
        PolicyCommand::Check {
            file,
            policy_config,
            compile_cache,
            ..
        } => check(&load(file, &compile_cache)?, policy_config).await,
        PolicyCommand::Test {
            file,
            store,
            policy_config,
            compile_cache,
            policy_instance_max_memory_mib,
        } => {
            let limits = LimitsConfig {
                policy_instance_max_memory_mib,
                ..LimitsConfig::default()
            };
            anyhow::ensure!(
                policy_instance_max_memory_mib > 0,
                "--policy-instance-max-memory-mib must be positive"
            );
            let policy = load(file, &compile_cache)?;
            test(&policy, &store, policy_config, limits.policy_limits()).await
        }
        PolicyCommand::New { name, path, sdk } => new(&name, &path, sdk.as_deref()),
    }
}

/// A policy loaded for a command, and how it was loaded.
struct Loaded {
    file: PathBuf,
    policy: Policy,
    /// Compiled, or from the compile cache, and how long it took.
    how: String,
}

/// The policy `file` names, on the runtime the flags describe.
fn load(file: PathBuf, compile_cache: &CompileCacheArgs) -> anyhow::Result<Loaded> {
    let mut config = compile_cache.policy_config();
    config.path = Some(file.clone());
    let runtime = config.runtime()?;
    let hits = || runtime.compile_cache_stats().map(|stats| stats.hits);
    let before = hits();
    let started = Instant::now();
    let policy = config.load()?;
    let took = started.elapsed().as_secs_f64();
    let how = match (before, hits(), config.compile_cache_dir()) {
        (Some(before), Some(after), Some(dir)) if after > before => {
            format!("from the compile cache in {}, {took:.2} s", dir.display())
        }
        (Some(_), Some(_), Some(dir)) => {
            format!("compiled in {took:.2} s, kept in {}", dir.display())
        }
        _ => format!("compiled in {took:.2} s (no compile cache)"),
    };
    Ok(Loaded { file, policy, how })
}

async fn check(loaded: &Loaded, policy_config: PolicyConfigArgs) -> anyhow::Result<Output> {
    let (file, policy) = (&loaded.file, loaded.policy.clone());
    let exports = policy.describe_exports();
    let imports = policy.describe_imports();
    let config_keys = policy
        .config_keys()
        .await
        .context("the policy's describe export failed")?;
    let sessions = SessionManager::builder()
        .policy(policy)
        .policy_config(policy_config.pairs)
        .build()?;
    let self_check = sessions
        .self_check()
        .await
        .context("the policy's self-check failed with the default settings")?;
    let keys_text = match &config_keys {
        None => "(the policy does not describe its settings)".to_owned(),
        Some(keys) if keys.is_empty() => "(none)".to_owned(),
        Some(keys) => keys
            .iter()
            .map(|key| {
                let default = key
                    .default
                    .as_deref()
                    .map_or_else(|| "no default".to_owned(), |d| format!("default {d:?}"));
                format!("{} ({default}): {}", key.name, key.description)
            })
            .collect::<Vec<_>>()
            .join("\n  "),
    };
    let max_sessions = self_check
        .max_sessions
        .map_or_else(|| "unbounded".to_owned(), |max| max.to_string());
    let text = format!(
        "{} is a valid dsession policy\nloaded: {}\nexports:\n  {}\nimports:\n  {}\nconfig keys:\n  \
         {keys_text}\nself-check with the default settings: passed (probe token {:?}, \
         max sessions {max_sessions})",
        file.display(),
        loaded.how,
        exports.join("\n  "),
        imports.join("\n  "),
        self_check.probe_token,
    );
    let json_value = json!({
        "valid": true,
        "loaded": loaded.how,
        "exports": exports,
        "imports": imports,
        "config_keys": config_keys,
        "self_check": self_check,
    });
    Ok(Output::yes(text, json_value))
}

async fn test(
    Loaded { file, policy, how }: &Loaded,
    store: &StoreArgs,
    policy_config: PolicyConfigArgs,
    limits: Limits,
) -> anyhow::Result<Output> {
    let mut kit = Kit::new(policy.clone()).limits(limits);
    for (key, value) in policy_config.pairs {
        kit = kit.policy_setting(key, value);
    }
    let on = match store.config() {
        Some(config) => {
            let kind = config.kind();
            kit = kit.shared_store(config.open().await?);
            kind
        }
        None => "memory",
    };
    println!("conformance kit: {} on the {on} store", file.display());
    println!("loaded: {how}");
    let report = kit.run(|case| println!("{case}")).await;
    let count = |verdict| {
        report
            .cases
            .iter()
            .filter(|case| case.verdict == verdict)
            .count()
    };
    let (passed, failed, skipped) = (
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Skip),
    );
    let summary = format!("{passed} passed, {failed} failed, {skipped} skipped");
    let json_value = json!({ "passed": passed, "failed": failed, "skipped": skipped });
    Ok(if report.passed() {
        Output::yes(summary, json_value)
    } else {
        Output::no(summary, json_value)
    })
}

/// The starter's files, each with `{{name}}`, `{{crate_name}}` and
/// `{{sdk}}` to fill in.
const TEMPLATE: [(&str, &str); 5] = [
    (
        "Cargo.toml",
        include_str!("../../templates/policy/Cargo.toml"),
    ),
    ("src/lib.rs", include_str!("../../templates/policy/lib.rs")),
    (
        "tests/conformance.rs",
        include_str!("../../templates/policy/conformance.rs"),
    ),
    (
        "README.md",
        include_str!("../../templates/policy/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/policy/gitignore"),
    ),
];

/// The published SDK the starter depends on by default.
const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

fn new(name: &str, path: &Path, sdk: Option<&Path>) -> anyhow::Result<Output> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!(
            "{name:?} is not a policy name: use lowercase letters, digits, '-' and '_', \
             starting with a letter"
        );
    }
    let sdk = match sdk {
        None => format!("\"{SDK_VERSION}\""),
        Some(sdk) => {
            let sdk = sdk
                .canonicalize()
                .with_context(|| format!("no SDK at {}", sdk.display()))?;
            let manifest = std::fs::read_to_string(sdk.join("Cargo.toml"))
                .with_context(|| format!("no Cargo.toml in {}", sdk.display()))?;
            if !manifest.contains("name = \"dsession-policy-sdk\"") {
                bail!("{} is not the dsession-policy-sdk crate", sdk.display());
            }
            format!("{{ path = {:?} }}", sdk.display().to_string())
        }
    };
    let root = path.join(name);
    if root.exists() {
        bail!(
            "{} already exists; pick another name or --path",
            root.display()
        );
    }
    let crate_name = name.replace('-', "_");
    for (file, text) in TEMPLATE {
        let target = root.join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate_name}}", &crate_name)
            .replace("{{sdk}}", &sdk);
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    let component = format!("target/wasm32-wasip2/release/{crate_name}.wasm");
    let text = format!(
        "created the policy {name} in {}\nnext:\n  cd {}\n  cargo build --release --target \
         wasm32-wasip2\n  dsession policy test {component}\n  dsession serve --policy {component}",
        root.display(),
        root.display(),
    );
    Ok(Output::yes(
        text,
        json!({ "path": root, "component": component }),
    ))
}
