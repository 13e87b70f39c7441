//! Pure scoring logic (no I/O): text quality, near-duplicate detection, spam/bot signals and
//! the DVA image-caption model. This crate is the home of issues 5 and 6; the foundation
//! (issue 3) only reserves its place in the layering (`infra` < `scoring` < processors).
