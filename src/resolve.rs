//! What the configuration names, opened for the libraries that use it: the lake, the reward
//! policy, the DVA model on its engine, and each processor's consumer group and context. The
//! binary reads files and the environment here, so the libraries never do.

use std::sync::Arc;

use anyhow::Context as _;
use gata_dva::{Engine, ModelSource, Provider};
use gata_infra::{
    config::{DvaConfig, DvaEngine, DvaProvider, GataConfig},
    foreground::Foreground,
    kafka::KafkaClients,
};
use gata_lakehouse::Lake;
use gata_rewards::Policy;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// The configured lake (`lake.uri`, else `<data_dir>/lake`).
pub fn lake(cfg: &GataConfig) -> anyhow::Result<Lake> {
    Ok(Lake::new(cfg.lake_uri()?.as_str(), &cfg.lake.storage_options.0)?)
}

/// The reward policy `name`: a built-in one (`v1`, `v2`, `demo`), or the policy file at `name`.
pub fn policy(name: &str) -> anyhow::Result<Policy> {
    if let Some(policy) = Policy::builtin(name) {
        return Ok(policy);
    }
    let text = std::fs::read_to_string(name).with_context(|| {
        let builtin: Vec<&str> = Policy::builtin_names().collect();
        format!("reward policy {name}: not a built-in policy ({}) and not a readable file", builtin.join(", "))
    })?;
    Ok(Policy::parse(name, &text)?)
}

/// A processor's consumer group. With an external cluster: the configured group, shared by
/// every instance. With the embedded broker, each process incarnation joins a fresh group
/// (`<group>-<start time>`): the embedded broker's coordinator (tansu 0.6) can leave a restarted
/// member without partitions while the membership of a SIGKILLed predecessor lingers. That
/// costs nothing in correctness: in embedded mode each processor is its group's only member by
/// construction, and it resumes from what the lake records, never from Kafka's committed
/// offsets.
pub fn consumer_group(cfg: &GataConfig, group: &str) -> String {
    match cfg.kafka.brokers {
        Some(_) => group.to_string(),
        None => format!("{group}-{:x}", chrono::Utc::now().timestamp_millis()),
    }
}

/// The context of a processor in `group` (as given: see [`consumer_group`]), beside the
/// process's intake when it runs one.
pub fn context(
    cfg: &GataConfig,
    group: String,
    kafka: &KafkaClients,
    registry: &Registry,
    stop: &CancellationToken,
    foreground: Option<&Arc<Foreground>>,
) -> gata_stream_processors::Context {
    gata_stream_processors::Context {
        group,
        kafka: kafka.clone(),
        limits: cfg.ingest.limits.clone(),
        registry: registry.clone(),
        stop: stop.child_token(),
        foreground: foreground.cloned(),
    }
}

/// Opens the DVA's model (the configured directory, or the shipped one) on the configured
/// engine.
pub async fn dva_model(cfg: &DvaConfig) -> anyhow::Result<Arc<gata_dva::Clip>> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || {
        let source = ModelSource::from_config(cfg.model_dir.clone());
        let clip = gata_dva::Clip::open(dva_engine(&cfg)?, &source, cfg.threads)
            .with_context(|| format!("opening the model in {source}"))?;
        tracing::info!(engine = clip.engine(), provider = clip.provider(), model = %clip.card().id, source = %source, "DVA model loaded");
        Ok(Arc::new(clip))
    })
    .await?
}

/// Opens the DVA's model and, when `dva.head` names one, the head trained on it.
pub async fn dva_models(cfg: &DvaConfig) -> anyhow::Result<gata_stream_processors::dva::Models> {
    let clip = dva_model(cfg).await?;
    let Some(dir) = cfg.head.clone() else { return Ok(gata_stream_processors::dva::Models { clip, head: None }) };
    let (cfg, base) = (cfg.clone(), clip.clone());
    let head = tokio::task::spawn_blocking(move || {
        let head = gata_dva::Head::open(dva_engine(&cfg)?, &dir, &base)
            .with_context(|| format!("opening the DVA head in {} (dva.head)", dir.display()))?;
        tracing::info!(head = %head.card().id, sha256 = %head.card().sha256, threshold = head.card().threshold, "DVA head loaded");
        anyhow::Ok(Arc::new(head))
    })
    .await??;
    Ok(gata_stream_processors::dva::Models { clip, head: Some(head) })
}

/// ONNX Runtime when it loads (`auto`, `onnxruntime`); tract when asked for, or under `auto`
/// when ONNX Runtime is missing, which is logged: never a silent fallback.
fn dva_engine(cfg: &DvaConfig) -> anyhow::Result<Engine> {
    let provider = match cfg.provider {
        DvaProvider::Cpu => Provider::Cpu,
        DvaProvider::Cuda => Provider::Cuda,
    };
    let runtime = || -> anyhow::Result<Engine> {
        let lib = gata_infra::host::onnxruntime_library(cfg.onnxruntime.as_ref())?;
        Ok(Engine::OnnxRuntime { env: gata_dva::load_runtime(&lib)?, provider })
    };
    let tract = |why: &str| {
        if provider == Provider::Cuda {
            tracing::warn!("dva.provider = \"cuda\" needs ONNX Runtime; tract runs on the CPU");
        }
        tracing::warn!(reason = why, "the DVA scores with tract, the pure-Rust engine built into gata (CPU)");
        Engine::Tract
    };
    Ok(match cfg.engine {
        DvaEngine::Onnxruntime => runtime().context("dva.engine = \"onnxruntime\"")?,
        DvaEngine::Tract => tract("dva.engine = \"tract\""),
        DvaEngine::Auto => runtime().unwrap_or_else(|e| tract(&e.to_string())),
    })
}

/// The consensus's accept thresholds: `dva.threshold`, else the model card's, and
/// `validation.threshold` for the validators' scorer version.
pub fn consensus_thresholds(cfg: &GataConfig) -> anyhow::Result<gata_stream_processors::dva::consensus::Thresholds> {
    let model = match cfg.dva.threshold {
        Some(t) => t,
        None => {
            gata_dva::ModelCard::read(&ModelSource::from_config(cfg.dva.model_dir.clone()))
                .context("the consensus threshold comes from the model card")?
                .threshold
        }
    };
    Ok(gata_stream_processors::dva::consensus::Thresholds {
        model: f64::from(model),
        versions: [(cfg.validation.scorer_version.clone(), cfg.validation.threshold)].into(),
    })
}

/// The scoring section with its thread count resolved: `scoring.threads`, or when 0, every
/// core if the scorer has its process to itself and one otherwise (beside intake or the sink, a
/// burst on every core delays their requests for no gain in what the machine gets through).
pub fn scoring(cfg: &GataConfig) -> gata_infra::config::ScoringConfig {
    let threads = match cfg.scoring.threads {
        0 if cfg.roles.iter().all(|r| *r == gata_infra::config::Role::Scoring) => gata_parallel::available_threads(),
        0 => 1,
        n => n,
    };
    gata_infra::config::ScoringConfig { threads, ..cfg.scoring.clone() }
}
