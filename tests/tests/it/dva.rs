//! The DVA in a running platform with the shipped model on ONNX Runtime (CPU): every
//! image-text pair gets one agreement score; captions that describe their image outscore
//! captions of other scenes; each score names the model and its timings; images sent by URL
//! are fetched from a loopback server and score as the same image sent inline; a corrupt
//! image, a 404, an oversized download and a server that never answers each get a reject with
//! the reason and go to the dead-letter topic. The review page then shows the pairs, filtered
//! and paged, and renders images and score bars in headless Chromium.

use std::{path::PathBuf, time::Duration};

use base64::Engine as _;
use gata_contract::topics::{DEAD_LETTERS, DLQ_REASON};
use gata_infra::kafka::KafkaClients;
use gata_tests::{Gata, eventually, free_port};
use rdkafka::{
    Message,
    consumer::{Consumer, StreamConsumer},
    message::Headers,
};
use serde_json::{Value, json};

use crate::{bin, browser::chromium, scoring::uuid};

pub(crate) fn model_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-clip")
}

fn by_url(id: u32, who: &str, caption: &str, url: &str) -> Value {
    json!({
        "event_id": uuid(id),
        "contributor_id": who,
        "occurred_at": "2026-11-24T10:00:00Z",
        "caption": caption,
        "image": {"content_type": "image/jpeg", "url": url},
    })
}

/// A loopback image host: `/img/<file>` serves a held-out image, `/huge.jpg` more bytes than
/// an image may have, `/slow.jpg` never answers in time, anything else is a 404.
async fn image_host(dir: PathBuf) -> String {
    use axum::{extract::Path, routing::get};
    let app = axum::Router::new()
        .route(
            "/img/{file}",
            get(move |Path(file): Path<String>| {
                let path = dir.join(file);
                async move { std::fs::read(path).map_err(|_| axum::http::StatusCode::NOT_FOUND) }
            }),
        )
        .route("/huge.jpg", get(|| async { vec![0xffu8; 2 * 1024 * 1024] }))
        .route(
            "/slow.jpg",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn pair(id: u32, who: &str, caption: &str, image: &[u8], content_type: &str) -> Value {
    json!({
        "event_id": uuid(id),
        "contributor_id": who,
        "occurred_at": "2026-11-24T10:00:00Z",
        "caption": caption,
        "image": {"content_type": content_type, "base64": base64::engine::general_purpose::STANDARD.encode(image)},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn every_pair_is_scored_by_the_model_and_unusable_images_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir();
    let env = [
        ("GATA__DVA__MODEL_DIR", model.to_str().unwrap()),
        ("GATA__DVA__BATCH_SIZE", "8"),
        ("GATA__DVA__ALLOW_PRIVATE_URLS", "true"),
        ("GATA__DVA__FETCH_TIMEOUT", "2s"),
        ("GATA__DVA__FETCH_RETRIES", "1"),
    ];
    let gata = Gata::start_on(bin(), dir.path(), free_port(), &env).await.unwrap();
    let api = gata.client();
    let host = image_host(model.join("heldout")).await;

    let heldout: Vec<Value> = serde_json::from_slice(&std::fs::read(model.join("heldout.json")).unwrap()).unwrap();
    let card: Value = serde_json::from_slice(&std::fs::read(model.join("model.json")).unwrap()).unwrap();
    let mut pairs = Vec::new();
    for (i, row) in heldout.iter().filter(|r| r["image"].as_str().unwrap().ends_with(".jpg")).take(12).enumerate() {
        let bytes = std::fs::read(model.join("heldout").join(row["image"].as_str().unwrap())).unwrap();
        let i = i as u32;
        pairs.push(pair(i, &format!("shooter_{i}"), row["caption"].as_str().unwrap(), &bytes, "image/jpeg"));
        pairs.push(pair(100 + i, &format!("shooter_{i}"), row["mismatched"].as_str().unwrap(), &bytes, "image/jpeg"));
    }
    // A JPEG cut in half: its header passes intake, its body cannot be decoded.
    let whole = std::fs::read(model.join("heldout").join(heldout[0]["image"].as_str().unwrap())).unwrap();
    pairs.push(pair(999, "truncator", "a red circle", &whole[..whole.len() / 2], "image/jpeg"));
    // 8192 x 1: tiny to decode, but 411 M pixels once its short side is resized to 224.
    pairs.push(pair(998, "stretcher", "a long thin line", &png_of(8192, 1, [200, 30, 30]), "image/png"));
    // The first held-out scene again, by URL; then URLs that cannot give an image.
    let first = heldout.iter().find(|r| r["image"].as_str().unwrap().ends_with(".jpg")).unwrap();
    let (file, caption) = (first["image"].as_str().unwrap(), first["caption"].as_str().unwrap());
    pairs.push(by_url(200, "linker", caption, &format!("{host}/img/{file}")));
    pairs.push(by_url(201, "linker", "a missing picture", &format!("{host}/img/missing.jpg")));
    pairs.push(by_url(202, "linker", "a very large picture", &format!("{host}/huge.jpg")));
    pairs.push(by_url(203, "linker", "a picture that never comes", &format!("{host}/slow.jpg")));
    let (status, body) = api.post_ndjson("/v1/image-text-pairs", &pairs).await.unwrap();
    assert_eq!(status, 202, "{body}");

    let rows = eventually("a DVA score per pair", Duration::from_secs(120), || async {
        let rows = api
            .rows("SELECT subject_event_id, scorer_version, score, verdict, reasons, model_id, model_sha256, inference_ms FROM quality_scores WHERE subject_kind = 'image_text_pair'")
            .await
            .ok()?;
        (rows.len() >= pairs.len()).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), pairs.len(), "one score per pair");
    let score = |id: String| rows.iter().find(|r| r["subject_event_id"] == id.as_str()).unwrap().clone();
    let threshold = card["threshold"].as_f64().unwrap();
    let (mut matching, mut mismatched) = (Vec::new(), Vec::new());
    for i in 0..12 {
        for (id, into) in [(uuid(i), &mut matching), (uuid(100 + i), &mut mismatched)] {
            let r = score(id);
            let s = r["score"].as_f64().unwrap();
            assert!((-1.0..=1.0).contains(&s), "{r}");
            assert_eq!(r["verdict"] == "accept", s >= threshold, "verdict follows the threshold: {r}");
            assert_eq!(r["model_id"], card["id"], "{r}");
            assert!(r["scorer_version"].as_str().unwrap().starts_with("dva/gata/tiny-clip-64@"), "{r}");
            assert!(r["inference_ms"].as_f64().unwrap() > 0.0, "{r}");
            into.push(s);
        }
    }
    let wins = matching.iter().flat_map(|m| mismatched.iter().map(move |n| f64::from(u8::from(m > n)))).sum::<f64>();
    let auc = wins / (matching.len() * mismatched.len()) as f64;
    println!("dva in the platform: 12 matching vs 12 mismatched captions, AUC {auc:.3}");
    assert!(auc >= 0.85, "AUC {auc}: matching {matching:?} mismatched {mismatched:?}");

    let fetched = score(uuid(200));
    let inline = score(uuid(0));
    let (a, b) = (fetched["score"].as_f64().unwrap(), inline["score"].as_f64().unwrap());
    assert!((a - b).abs() < 1e-4, "the image by URL scores as the same image inline: {a} vs {b}");
    let silver = api
        .rows(&format!("SELECT image_url, image_sha256 FROM image_text_pairs WHERE event_id = '{}'", uuid(200)))
        .await
        .unwrap();
    assert!(
        silver[0]["image_url"].as_str().unwrap().ends_with(file) && silver[0]["image_sha256"].is_null(),
        "{silver:?}"
    );

    let mut expected = Vec::new();
    for (id, code, says) in [
        (999, "undecodable_image", "image"),
        (998, "image_too_large", "resizes to"),
        (201, "image_unreachable", "HTTP 404"),
        (202, "image_too_large", "at most"),
        (203, "image_unreachable", "timed out"),
    ] {
        let r = score(uuid(id));
        assert_eq!(r["verdict"], "reject", "{r}");
        assert_eq!(r["reasons"][0]["code"], code, "{r}");
        assert!(r["reasons"][0]["detail"].as_str().unwrap().contains(says), "{r}");
        expected.push(format!("dva: {code}: "));
    }

    let kafka = KafkaClients::new(gata.kafka_bootstrap().expect("printed Kafka address"));
    let consumer: StreamConsumer = kafka.consumer("dva-dlq-reader").create().unwrap();
    consumer.subscribe(&[DEAD_LETTERS]).unwrap();
    let mut reasons = Vec::new();
    while reasons.len() < expected.len() {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await.expect("a dead letter").unwrap();
        let reason = msg.headers().and_then(|h| {
            h.iter().find(|h| h.key == DLQ_REASON).and_then(|h| h.value).map(|v| String::from_utf8_lossy(v).to_string())
        });
        reasons.extend(reason);
    }
    for prefix in expected {
        assert!(reasons.iter().any(|r| r.starts_with(&prefix)), "{prefix} in {reasons:?}");
    }

    review_page(&gata, &rows, &model).await;
}

/// The review page over the scores above: every pair listed, the score filter and paging
/// honoured, images served; then two solid-colour pairs rendered in headless Chromium, checked
/// pixel by pixel.
async fn review_page(gata: &Gata, rows: &[Value], model: &std::path::Path) {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", gata.base);
        async move {
            let r = http.get(url).send().await.unwrap();
            (
                r.status().as_u16(),
                r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()),
                r.bytes().await.unwrap(),
            )
        }
    };
    let html = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let scores_on = |page: &str| -> Vec<f64> {
        page.split("data-score=\"").skip(1).map(|s| s[..s.find('"').unwrap()].parse().unwrap()).collect()
    };

    let (status, _, body) = get("/review?per_page=100".into()).await;
    assert_eq!(status, 200);
    assert_eq!(scores_on(&html(&body)).len(), rows.len(), "every scored pair is listed");
    let in_range = rows.iter().filter(|r| (0.3..=1.0).contains(&r["score"].as_f64().unwrap())).count();
    let (_, _, body) = get("/review?per_page=100&min=0.3&max=1".into()).await;
    let shown = scores_on(&html(&body));
    assert_eq!(shown.len(), in_range, "the score filter shows exactly the pairs in range");
    assert!(shown.iter().all(|s| (0.3 - 1e-4..=1.0).contains(s)), "{shown:?}");
    let (_, _, body) = get("/review?per_page=5".into()).await;
    assert!(html(&body).contains("rel=\"next\"") && scores_on(&html(&body)).len() == 5);
    let (_, _, body) = get("/review?per_page=5&page=2".into()).await;
    assert!(html(&body).contains("rel=\"prev\"") && scores_on(&html(&body)).len() == 5);
    let (status, _, body) = get("/review?min=2".into()).await;
    assert_eq!(status, 400, "{}", html(&body));
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"]["message"].as_str().unwrap().contains("min"));

    let heldout: Vec<Value> = serde_json::from_slice(&std::fs::read(model.join("heldout.json")).unwrap()).unwrap();
    let first = heldout.iter().find(|r| r["image"].as_str().unwrap().ends_with(".jpg")).unwrap();
    let file = std::fs::read(model.join("heldout").join(first["image"].as_str().unwrap())).unwrap();
    let (status, content_type, body) = get(format!("/review/images/{}", uuid(0))).await;
    assert_eq!((status, content_type.as_deref()), (200, Some("image/jpeg")));
    assert_eq!(body.as_ref(), file.as_slice(), "inline images are served from the lake");
    let (status, _, body) = get(format!("/review/images/{}", uuid(200))).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_ref(), file.as_slice(), "URL images redirect to their source");
    assert_eq!(get(format!("/review/images/{}", uuid(4242))).await.0, 404);

    // Two solid-colour pairs, newest of all, so they lead the first page.
    let magenta = solid_png([255, 0, 255]);
    let cyan = solid_png([0, 255, 255]);
    let api = gata.client();
    let colour_pairs = [
        pair(300, "painter", "a magenta square", &magenta, "image/png"),
        pair(301, "painter", "a cyan square", &cyan, "image/png"),
    ];
    let (status, body) = api.post_ndjson("/v1/image-text-pairs", &colour_pairs).await.unwrap();
    assert_eq!(status, 202, "{body}");
    let painted = eventually("scores of the colour pairs", Duration::from_secs(60), || async {
        let rows = api
            .rows("SELECT subject_event_id, score, verdict FROM quality_scores WHERE contributor_id = 'painter'")
            .await
            .ok()?;
        (rows.len() == 2).then_some(rows)
    })
    .await;

    let shot = tempfile::tempdir().unwrap();
    let png_path = shot.path().join("review.png");
    let url = format!("{}/review?per_page=2", gata.base);
    chromium(shot.path(), &[&format!("--screenshot={}", png_path.display()), "--window-size=1000,700", &url]);
    let (width, pixels) = read_png(&png_path);
    let count = |rgb: [u8; 3]| pixels.iter().filter(|p| p.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 4)).count();
    let image_area = 224 * 224;
    assert!(
        count([255, 0, 255]) >= image_area * 9 / 10,
        "magenta image rendered: {} px of {width}-wide shot",
        count([255, 0, 255])
    );
    assert!(count([0, 255, 255]) >= image_area * 9 / 10, "cyan image rendered: {} px", count([0, 255, 255]));
    for row in &painted {
        let colour = if row["verdict"] == "accept" { [27, 135, 63] } else { [198, 40, 40] };
        assert!(count(colour) >= 200, "the {} score bar and badge are painted: {} px", row["verdict"], count(colour));
    }
    let dom = chromium(shot.path(), &["--dump-dom", &url]);
    for row in &painted {
        let shown = format!("<span class=\"score\">{:.3}</span>", row["score"].as_f64().unwrap());
        assert!(dom.contains(&shown), "{shown} in the rendered page");
    }
}

/// A 64×64 PNG of one colour.
fn solid_png(rgb: [u8; 3]) -> Vec<u8> {
    png_of(64, 64, rgb)
}

/// A `width` × `height` PNG of one colour.
fn png_of(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    let mut w = enc.write_header().unwrap();
    w.write_image_data(&rgb.repeat((width * height) as usize)).unwrap();
    w.finish().unwrap();
    out
}

/// Width and RGB pixels of a PNG screenshot.
fn read_png(path: &std::path::Path) -> (u32, Vec<[u8; 3]>) {
    let mut decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks(channels).map(|p| [p[0], p[1], p[2]]).collect();
    (info.width, pixels)
}
