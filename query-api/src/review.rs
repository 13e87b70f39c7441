//! The DVA review page: `GET /review` shows the newest image-text pairs with their caption,
//! DVA score (a bar from −1 to 1, green when accepted, red when rejected), verdict and
//! reasons; `GET /review/images/{event_id}` serves each image (inline bytes from the lake, or
//! a redirect to the URL it was sent by). Plain server-rendered HTML: no script, no assets.
//!
//! Query parameters: `page` (from 1), `per_page` (1 to 100, default 24), `min` and `max`
//! (score range, within [-1, 1]) and `verdict` (`accept` or `reject`). Bad parameters get a
//! 400 with a JSON reason, like every other route.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
};
use gata_lakehouse::deltalake::datafusion::{
    arrow::array::{Array, AsArray},
    prelude::{col, lit},
};
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use gata_infra::auth::Principal;

use crate::{QueryError, Result, sql::SqlEngine};

/// Most pairs on one page.
pub const MAX_PER_PAGE: usize = 100;
/// The last page that may be asked for.
pub const MAX_PAGE: usize = 100_000;

/// The review page's query parameters.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// Page number, from 1.
    #[schemars(range(min = 1, max = MAX_PAGE))]
    pub page: Option<usize>,
    /// Pairs per page.
    #[schemars(range(min = 1, max = MAX_PER_PAGE))]
    pub per_page: Option<usize>,
    /// Lowest score shown.
    #[schemars(range(min = -1.0, max = 1.0))]
    pub min: Option<f64>,
    /// Highest score shown (below `min`, the page is empty).
    #[schemars(range(min = -1.0, max = 1.0))]
    pub max: Option<f64>,
    /// Only this verdict (empty: both).
    #[schemars(extend("enum" = ["", "accept", "reject"]))]
    pub verdict: Option<String>,
}

/// The checked parameters.
#[derive(Debug, Clone, PartialEq)]
struct Filter {
    page: usize,
    per_page: usize,
    min: f64,
    max: f64,
    verdict: Option<&'static str>,
}

impl Filter {
    fn check(q: &ReviewQuery) -> Result<Filter> {
        let bad = |m: String| Err(QueryError::BadRequest(m));
        let (page, per_page) = (q.page.unwrap_or(1), q.per_page.unwrap_or(24));
        let (min, max) = (q.min.unwrap_or(-1.0), q.max.unwrap_or(1.0));
        if !(1..=MAX_PAGE).contains(&page) {
            return bad(format!("page={page}; expected 1 to {MAX_PAGE}"));
        }
        if !(1..=MAX_PER_PAGE).contains(&per_page) {
            return bad(format!("per_page={per_page}; expected 1 to {MAX_PER_PAGE}"));
        }
        if !(-1.0..=1.0).contains(&min) || !(-1.0..=1.0).contains(&max) {
            return bad(format!("min={min}, max={max}; expected both within [-1, 1]"));
        }
        let verdict = match q.verdict.as_deref() {
            None | Some("") => None,
            Some("accept") => Some("accept"),
            Some("reject") => Some("reject"),
            Some(other) => return bad(format!("verdict={other:?}; expected accept or reject")),
        };
        Ok(Filter { page, per_page, min, max, verdict })
    }

    fn sql_where(&self) -> String {
        let mut w =
            format!("s.subject_kind = 'image_text_pair' AND s.score >= {:?} AND s.score <= {:?}", self.min, self.max);
        if let Some(v) = self.verdict {
            w.push_str(&format!(" AND s.verdict = '{v}'"));
        }
        w
    }

    /// The page's link with `page` replaced.
    fn link(&self, page: usize) -> String {
        let verdict = self.verdict.unwrap_or("");
        format!("/review?page={page}&per_page={}&min={}&max={}&verdict={verdict}", self.per_page, self.min, self.max)
    }
}

/// Renders one page of the review.
pub async fn page(engine: &SqlEngine, principal: &Principal, query: &ReviewQuery) -> Result<Html<String>> {
    let f = Filter::check(query)?;
    let filter = f.sql_where();
    let rows = engine
        .run(
            principal,
            &format!(
                "SELECT p.event_id, p.contributor_id, p.caption, p.image_url, p.image_width, p.image_height, \
             s.score, s.verdict, s.scorer_version, s.reasons, s.consensus_agreement \
             FROM quality_scores s JOIN image_text_pairs p ON p.event_id = s.subject_event_id \
             WHERE {filter} ORDER BY p.received_at DESC, p.event_id, s.scorer_version \
             LIMIT {} OFFSET {}",
                f.per_page + 1,
                (f.page - 1) * f.per_page
            ),
            Vec::new(),
        )
        .await?
        .rows;
    let total = engine
        .run(
            principal,
            &format!(
                "SELECT COUNT(*) AS n FROM quality_scores s JOIN image_text_pairs p ON p.event_id = s.subject_event_id \
                 WHERE {filter}"
            ),
            Vec::new(),
        )
        .await?
        .rows
        .first()
        .and_then(|r| r.get("n"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let more = rows.len() > f.per_page;
    Ok(Html(render(&f, &rows[..rows.len().min(f.per_page)], total, more)))
}

fn esc(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_safe(text)
}

/// A string field's text, empty when absent or not a string.
fn text(field: Option<&Value>) -> &str {
    field.and_then(Value::as_str).unwrap_or("")
}

fn card(row: &Map<String, Value>) -> String {
    let id = text(row.get("event_id"));
    let score = row.get("score").and_then(Value::as_f64).unwrap_or(-1.0);
    let verdict = text(row.get("verdict"));
    let fill = ((score + 1.0) / 2.0 * 100.0).clamp(0.0, 100.0);
    let reasons: Vec<String> = row
        .get("reasons")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .map(|r| format!("<li><code>{}</code> {}</li>", esc(text(r.get("code"))), esc(text(r.get("detail")))))
                .collect()
        })
        .unwrap_or_default();
    let agreement = row
        .get("consensus_agreement")
        .and_then(Value::as_f64)
        .map(|a| format!("<span class=\"agreement\">workers agree {:.0}%</span>", a * 100.0))
        .unwrap_or_default();
    let size = match (row.get("image_width").and_then(Value::as_u64), row.get("image_height").and_then(Value::as_u64)) {
        (Some(w), Some(h)) => format!("{w}×{h}"),
        _ => format!("by URL: {}", esc(text(row.get("image_url")))),
    };
    format!(
        r#"<figure class="pair {verdict}" data-event-id="{id}" data-score="{score:.4}">
<img src="/review/images/{id}" alt="{caption}" width="224" height="224">
<figcaption>
<p class="caption">{caption}</p>
<div class="bar" title="score {score:.3} on [-1, 1]"><div class="fill {verdict}" style="width:{fill:.1}%"></div></div>
<p><span class="score">{score:.3}</span> <span class="verdict {verdict}">{verdict}</span> {agreement}</p>
<p class="meta">{contributor} · {size} · {version}</p>
<ul class="reasons">{reasons}</ul>
</figcaption>
</figure>"#,
        caption = esc(text(row.get("caption"))),
        contributor = esc(text(row.get("contributor_id"))),
        version = esc(text(row.get("scorer_version"))),
        reasons = reasons.concat(),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:16px;background:#fafafa;color:#222}\
form{margin:8px 0 16px}form input{width:5em}\
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px}\
.pair{margin:0;padding:8px;background:#fff;border:1px solid #ddd;border-radius:6px}\
.pair img{display:block;width:224px;height:224px;object-fit:contain;background:#eee}\
.caption{font-weight:600;margin:6px 0}.meta{color:#666;font-size:12px;word-break:break-all}\
.bar{height:10px;background:#e0e0e0;border-radius:3px;overflow:hidden}\
.fill{height:10px}.fill.accept{background:#1b873f}.fill.reject{background:#c62828}\
.score{font-size:20px;font-variant-numeric:tabular-nums}\
.verdict{padding:1px 6px;border-radius:3px;color:#fff}.verdict.accept{background:#1b873f}.verdict.reject{background:#c62828}\
.agreement{color:#555;font-size:12px}.reasons{margin:4px 0;padding-left:16px;font-size:12px}\
nav a{margin-right:12px}";

fn render(f: &Filter, rows: &[Map<String, Value>], total: u64, more: bool) -> String {
    let cards: Vec<String> = rows.iter().map(card).collect();
    let selected = |v: &str| if f.verdict == Some(v) { " selected" } else { "" };
    let mut nav = String::new();
    if f.page > 1 {
        nav.push_str(&format!(r#"<a rel="prev" href="{}">← newer</a>"#, esc(&f.link(f.page - 1))));
    }
    if more {
        nav.push_str(&format!(r#"<a rel="next" href="{}">older →</a>"#, esc(&f.link(f.page + 1))));
    }
    let empty = if rows.is_empty() { "<p class=\"empty\">No scored image-text pairs match.</p>" } else { "" };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gata DVA review</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body>
<h1>DVA review</h1>
<p class="summary">{total} scored pairs match · page {page} · <a href="/review/label">label pairs by keyboard</a></p>
<form method="get" action="/review">
<label>score from <input name="min" type="number" step="0.01" min="-1" max="1" value="{min}"></label>
<label>to <input name="max" type="number" step="0.01" min="-1" max="1" value="{max}"></label>
<label>verdict <select name="verdict"><option value="">any</option><option value="accept"{sa}>accept</option><option value="reject"{sr}>reject</option></select></label>
<input type="hidden" name="per_page" value="{per_page}">
<button type="submit">filter</button>
</form>
<nav>{nav}</nav>
{empty}<main class="grid">
{cards}
</main>
<nav>{nav}</nav>
</body></html>
"#,
        page = f.page,
        min = f.min,
        max = f.max,
        per_page = f.per_page,
        sa = selected("accept"),
        sr = selected("reject"),
        cards = cards.join("\n"),
    )
}

/// Serves the image of pair `event_id`: its bytes with their type, or a redirect to its URL.
pub async fn image(engine: &SqlEngine, principal: &Principal, event_id: &str) -> Result<Response> {
    let id =
        Uuid::parse_str(event_id).map_err(|_| QueryError::BadRequest(format!("{event_id:?} is not an event id")))?;
    let ctx = engine.session(principal).await?;
    let batches = ctx
        .table("image_text_pairs")
        .await?
        .filter(col("event_id").eq(lit(id.to_string())))?
        .select_columns(&["image", "image_content_type", "image_url"])?
        .limit(0, Some(1))?
        .collect()
        .await?;
    let not_found = || QueryError::NotFound(format!("no image-text pair {id}"));
    let batch = batches.iter().find(|b| b.num_rows() > 0).ok_or_else(not_found)?;
    let string = |i: usize| -> Option<String> {
        let c = batch.column(i);
        if c.is_null(0) {
            return None;
        }
        c.as_string_opt::<i32>()
            .map(|a| a.value(0).to_string())
            .or_else(|| c.as_string_view_opt().map(|a| a.value(0).to_string()))
    };
    let image = batch.column(0);
    let bytes = if image.is_null(0) {
        None
    } else {
        image
            .as_binary_opt::<i32>()
            .map(|a| a.value(0).to_vec())
            .or_else(|| image.as_binary_view_opt().map(|a| a.value(0).to_vec()))
    };
    match (bytes, string(1), string(2)) {
        (Some(bytes), Some(content_type), _) => {
            let content_type = HeaderValue::from_str(&content_type).map_err(|_| not_found())?;
            let headers = [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400, immutable")),
            ];
            Ok((StatusCode::OK, headers, bytes).into_response())
        }
        (None, _, Some(url)) => Ok(Redirect::to(&url).into_response()),
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_and_links_keep_the_filter() {
        let f = Filter::check(&ReviewQuery::default()).expect("defaults");
        assert_eq!(f, Filter { page: 1, per_page: 24, min: -1.0, max: 1.0, verdict: None });
        let q = ReviewQuery {
            page: Some(2),
            min: Some(0.2),
            max: Some(0.9),
            verdict: Some("reject".into()),
            ..Default::default()
        };
        let f = Filter::check(&q).expect("filter");
        assert_eq!(f.link(3), "/review?page=3&per_page=24&min=0.2&max=0.9&verdict=reject");
        assert!(f.sql_where().ends_with("s.score >= 0.2 AND s.score <= 0.9 AND s.verdict = 'reject'"));
        for bad in [
            ReviewQuery { page: Some(0), ..Default::default() },
            ReviewQuery { page: Some(MAX_PAGE + 1), ..Default::default() },
            ReviewQuery { per_page: Some(101), ..Default::default() },
            ReviewQuery { min: Some(-2.0), ..Default::default() },
            ReviewQuery { verdict: Some("maybe".into()), ..Default::default() },
        ] {
            assert!(matches!(Filter::check(&bad), Err(QueryError::BadRequest(_))), "{bad:?}");
        }
        // A range whose min is past its max is empty, not an error (the schema cannot say so).
        let empty =
            Filter::check(&ReviewQuery { min: Some(0.5), max: Some(0.1), ..Default::default() }).expect("filter");
        assert!(empty.sql_where().contains("s.score >= 0.5 AND s.score <= 0.1"));
    }

    #[test]
    fn captions_are_escaped() {
        let row: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "event_id": "e1", "caption": "<script>alert(1)</script> & \"quotes\"", "score": 0.5, "verdict": "accept",
            "reasons": [], "contributor_id": "c", "scorer_version": "dva/x@1", "image_width": 4, "image_height": 3,
        }))
        .expect("row");
        let html = card(&row);
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt; &amp; &quot;quotes&quot;"), "{html}");
        assert!(html.contains("width:75.0%"), "score 0.5 fills three quarters of [-1, 1]: {html}");
    }
}
