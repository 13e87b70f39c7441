//! `gata mirror`: copies every committed lake table version to an object store or a Greenfield
//! bucket (continuously, or one pass with `--once`); `gata greenfield verify`: re-hashes what a
//! target holds against the progress the lake records; `gata greenfield emulator`: a loopback
//! storage provider for trying the Greenfield target locally.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use gata_greenfield::{Account, Address, ChainClient, ChainConfig, Emulator, SpClient, SpConfig, Visibility};
use gata_infra::{
    config::{GataConfig, MirrorConfig, ObjectVisibility},
    kafka::KafkaClients,
};
use gata_lakehouse::Lake;
use gata_marketplace::{Market, follower::follow};
use gata_mirror::{GrantReport, GrantSync, Mirror, Target};
use tokio_util::sync::CancellationToken;
use url::Url;

/// Where to mirror, and how to reach it: each flag overrides its `[mirror]` setting.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// `file:///abs/dir`, `s3://bucket/prefix` (with the lake's storage options and `AWS_*`
    /// variables) or `greenfield://bucket/prefix` (`mirror.target`).
    #[arg(long)]
    target: Option<Url>,
    /// The storage provider of a Greenfield target (`mirror.greenfield.sp_endpoint`).
    #[arg(long)]
    sp_endpoint: Option<Url>,
    /// The chain's REST gateway, to sync marketplace access as object policies
    /// (`mirror.greenfield.chain_endpoint`).
    #[arg(long)]
    chain_endpoint: Option<Url>,
    /// The chain id (`mirror.greenfield.chain_id`).
    #[arg(long)]
    chain_id: Option<String>,
    /// Visibility of objects created on Greenfield (`mirror.greenfield.visibility`).
    #[arg(long, value_enum)]
    visibility: Option<VisibilityArg>,
    /// Attempts after the first for a failed provider request (`mirror.greenfield.retries`).
    #[arg(long)]
    retries: Option<u32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VisibilityArg {
    Private,
    PublicRead,
}

impl TargetArgs {
    fn apply(&self, cfg: &mut GataConfig) {
        let m = &mut cfg.mirror;
        let gf = &mut m.greenfield;
        if let Some(t) = &self.target {
            m.target = Some(t.clone());
        }
        if let Some(e) = &self.sp_endpoint {
            gf.sp_endpoint = e.clone();
        }
        if let Some(e) = &self.chain_endpoint {
            gf.chain_endpoint = Some(e.clone());
        }
        if let Some(id) = &self.chain_id {
            gf.chain_id = id.clone();
        }
        if let Some(v) = self.visibility {
            gf.visibility = match v {
                VisibilityArg::Private => ObjectVisibility::Private,
                VisibilityArg::PublicRead => ObjectVisibility::PublicRead,
            };
        }
        if let Some(r) = self.retries {
            gf.retries = r;
        }
    }
}

/// `gata mirror` options.
#[derive(Debug, Clone, Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// One pass over every table, then exit.
    #[arg(long)]
    once: bool,
    /// Time between passes (`mirror.interval`, 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    interval: Option<Duration>,
    /// Bytes per second sent to the target, 0: unlimited (`mirror.rate_limit_bytes_per_second`).
    #[arg(long)]
    rate_limit: Option<u64>,
    /// Table versions per table and pass (`mirror.versions_per_pass`, 100).
    #[arg(long)]
    versions_per_pass: Option<i64>,
    #[command(flatten)]
    pub flags: crate::Flags,
}

/// `gata greenfield` options.
#[derive(Debug, Clone, Args)]
pub struct GreenfieldArgs {
    #[command(subcommand)]
    op: GreenfieldOp,
    #[command(flatten)]
    pub flags: crate::Flags,
}

#[derive(Debug, Clone, Subcommand)]
#[expect(clippy::large_enum_variant, reason = "parsed once per command; its URLs are typed")]
enum GreenfieldOp {
    /// Re-hashes every object the lake records as mirrored to the target, and every submission
    /// record's rows; exits 1 on any difference.
    Verify {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Runs a loopback storage-provider emulator (signatures, checksums, permissions enforced).
    Emulator {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:9033")]
        listen: SocketAddr,
        /// A bucket to create, as `name=0xOwnerAddress`; repeatable.
        #[arg(long = "bucket", value_parser = parse_bucket)]
        buckets: Vec<(String, Address)>,
    },
}

fn parse_bucket(s: &str) -> Result<(String, Address), String> {
    let (name, owner) = s.split_once('=').ok_or("expected name=0xOwnerAddress")?;
    Ok((name.to_string(), owner.parse().map_err(|e: gata_wallet::WalletError| e.to_string())?))
}

/// The Greenfield account, from `GATA_GREENFIELD_PRIVATE_KEY` (never from a file or a flag).
fn account() -> anyhow::Result<Account> {
    let key = std::env::var("GATA_GREENFIELD_PRIVATE_KEY")
        .context("a Greenfield target needs the account's key in GATA_GREENFIELD_PRIVATE_KEY")?;
    Ok(Account::from_private_key_hex(&key)?)
}

/// The configured target.
fn target(cfg: &GataConfig) -> anyhow::Result<Target> {
    let url = cfg.mirror.target.clone().context("no mirror target: set mirror.target or give --target")?;
    if url.scheme() != "greenfield" {
        return Ok(Target::store(url, &cfg.lake.storage_options.0)?);
    }
    let gf = &cfg.mirror.greenfield;
    let config = SpConfig {
        endpoint: gf.sp_endpoint.clone(),
        retries: gf.retries,
        backoff: Duration::from_millis(200),
        timeout: Duration::from_secs(120),
    };
    let visibility = match gf.visibility {
        ObjectVisibility::Private => Visibility::Private,
        ObjectVisibility::PublicRead => Visibility::PublicRead,
    };
    Ok(Target::greenfield(url, SpClient::new(config, account()?)?, visibility)?)
}

/// Whether the mirror talks to the chain (object tags, marketplace access): a Greenfield target
/// with a chain endpoint.
fn uses_chain(cfg: &GataConfig) -> bool {
    cfg.mirror.greenfield.chain_endpoint.is_some()
        && cfg.mirror.target.as_ref().is_some_and(|t| t.scheme() == "greenfield")
}

/// The mirror `cfg` describes; with a chain endpoint, it also tags what it sends on chain and
/// keeps the bucket's object policies in line with `market` (which must be caught up with the
/// marketplace log).
pub async fn build(
    cfg: &GataConfig,
    lake: Lake,
    registry: &prometheus::Registry,
    market: Option<Arc<RwLock<Market>>>,
) -> anyhow::Result<Mirror> {
    let mirror = Mirror::new(lake.clone(), target(cfg)?, cfg.mirror.clone(), registry).await?;
    let (Some(market), true) = (market, uses_chain(cfg)) else { return Ok(mirror) };
    let gf = &cfg.mirror.greenfield;
    let endpoint = gf.chain_endpoint.clone().context("mirror.greenfield.chain_endpoint")?;
    let chain = ChainClient::new(ChainConfig::new(endpoint, gf.chain_id.clone()), account()?)?;
    let mut buyers = BTreeMap::new();
    for (buyer, address) in &gf.buyers {
        let address: Address = address.parse().with_context(|| format!("mirror.greenfield.buyers.{buyer}"))?;
        buyers.insert(buyer.clone(), address);
    }
    Ok(mirror.with_chain(chain.clone()).with_grants(GrantSync::new(&lake, chain, market, buyers).await?))
}

/// Follows the marketplace log until caught up, when the mirror syncs grants.
pub async fn market(
    cfg: &GataConfig,
    kafka: &KafkaClients,
    stop: &CancellationToken,
) -> anyhow::Result<Option<Arc<RwLock<Market>>>> {
    if !uses_chain(cfg) {
        return Ok(None);
    }
    let followed =
        follow(kafka, cfg.ingest.limits.clone(), stop.child_token()).context("following the marketplace log")?;
    followed.caught_up(Duration::from_secs(120)).await.context("reading the marketplace log")?;
    Ok(Some(followed.market))
}

/// Runs `gata mirror`.
pub async fn mirror(mut cfg: GataConfig, args: MirrorArgs, stop: CancellationToken) -> anyhow::Result<()> {
    args.target.apply(&mut cfg);
    if let Some(i) = args.interval {
        cfg.mirror.interval = i;
    }
    if let Some(r) = args.rate_limit {
        cfg.mirror.rate_limit_bytes_per_second = r;
    }
    if let Some(v) = args.versions_per_pass {
        cfg.mirror.versions_per_pass = v;
    }
    let follower = stop.child_token();
    let (_embedded, market) = if uses_chain(&cfg) {
        let (embedded, bootstrap) = crate::platform::bootstrap(&cfg).await.context(
            "starting the embedded broker over the data directory's log for the marketplace (is `gata serve` running? then give --brokers)",
        )?;
        (embedded, market(&cfg, &KafkaClients::configured(bootstrap, &cfg.kafka), &follower).await?)
    } else {
        (None, None)
    };
    // Declared after the embedded broker, so dropped before it: the follower stops first.
    let _stop_follower = follower.drop_guard();
    let registry = prometheus::Registry::new();
    let mut mirror = build(&cfg, crate::resolve::lake(&cfg)?, &registry, market).await?;
    if !args.once {
        mirror.run(stop).await;
        return Ok(());
    }
    loop {
        let report = mirror.pass().await?;
        if report.versions.is_empty() && report.grants == GrantReport::default() && report.anchor.is_none() {
            break;
        }
        println!(
            "uploaded {} objects ({} bytes), {} already there, {} gone from the lake; versions {:?}; anchor {:?}; policies put {}, deleted {}",
            report.uploaded,
            report.bytes,
            report.present,
            report.missing,
            report.versions,
            report.anchor,
            report.grants.granted,
            report.grants.revoked
        );
    }
    println!("{} is up to date", mirror.target().url());
    Ok(())
}

/// Runs `gata greenfield`.
pub async fn greenfield(cfg: GataConfig, args: GreenfieldArgs, stop: CancellationToken) -> anyhow::Result<()> {
    match args.op {
        GreenfieldOp::Verify { target: target_args } => {
            let mut cfg = cfg;
            target_args.apply(&mut cfg);
            let target = target(&cfg)?;
            let mut mirror = Mirror::new(
                crate::resolve::lake(&cfg)?,
                target.clone(),
                MirrorConfig { rate_limit_bytes_per_second: 0, versions_per_pass: 1, ..cfg.mirror.clone() },
                &prometheus::Registry::new(),
            )
            .await?;
            let entries = mirror.progress().entries(target.url()).await?;
            if entries.is_empty() {
                bail!("the lake records nothing mirrored to {}", target.url());
            }
            let report = gata_mirror::verify(&target, &entries, &mirror.epoch_roots().await?).await?;
            for problem in &report.problems {
                println!("MISMATCH {problem}");
            }
            println!(
                "checked {} objects, {} submission records, {} submissions, {} anchors: {} problems",
                report.objects,
                report.records,
                report.submissions,
                report.anchors,
                report.problems.len()
            );
            if !report.problems.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        GreenfieldOp::Emulator { listen, buckets } => {
            let operator = Account::from_private_key_hex(&"01".repeat(32))?.address();
            let emulator = Emulator::new(operator);
            for (name, owner) in &buckets {
                emulator.create_bucket(name, *owner);
            }
            let addr = emulator.spawn(listen).await.with_context(|| format!("listening on {listen}"))?;
            println!("storage-provider emulator on http://{addr}; buckets: {buckets:?}");
            stop.cancelled().await;
            Ok(())
        }
    }
}
