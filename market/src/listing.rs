//! The SQL of a listing's tables: the silver rows of one kind that pass the listing's filters,
//! with their latest score, restricted to the contributors who granted access.
//!
//! The SQL reads the lake's own table names (`chat_turns`, `quality_scores`, …); the query
//! service plans it in a private session and exposes only the result, so a buyer never sees
//! the tables underneath.

use std::collections::BTreeSet;

use gata_contract::{EventKind, ListingSpec};

/// Quotes a string as a SQL literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn in_list(column: &str, values: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let items: Vec<String> = values.into_iter().map(|v| literal(v.as_ref())).collect();
    if items.is_empty() { "FALSE".to_string() } else { format!("{column} IN ({})", items.join(", ")) }
}

/// The silver table of `kind`.
pub fn silver_table(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ChatTurn => "chat_turns",
        EventKind::Preference => "preferences",
        EventKind::ImageTextPair => "image_text_pairs",
    }
}

/// The latest score of every submission (the newest `scored_at` among its scorer versions;
/// DVA workers' votes excluded).
const LATEST_SCORES: &str = "SELECT subject_event_id, score AS quality_score, verdict, language FROM (\
     SELECT subject_event_id, score, verdict, language, \
       ROW_NUMBER() OVER (PARTITION BY subject_event_id ORDER BY scored_at DESC, scorer_version DESC) AS rank \
     FROM quality_scores WHERE validator IS NULL) WHERE rank = 1";

/// The rows of `listing`'s `kind` table that contributors in `granted` let its buyers see:
/// accepted submissions, at least `min_score`, in the language, license and receipt-time
/// window the listing names; every column of the silver table but `day`, plus `quality_score`
/// and `language`.
pub fn listing_sql(listing: &ListingSpec, kind: EventKind, granted: &BTreeSet<String>) -> String {
    let table = silver_table(kind);
    let mut filters = vec!["s.verdict = 'accept'".to_string(), in_list("t.contributor_id", granted)];
    if let Some(min) = listing.min_score {
        filters.push(format!("s.quality_score >= {min:?}"));
    }
    if let Some(from) = listing.from {
        filters.push(format!("t.received_at >= TIMESTAMP {}", literal(&from.to_rfc3339())));
    }
    if let Some(to) = listing.to {
        filters.push(format!("t.received_at < TIMESTAMP {}", literal(&to.to_rfc3339())));
    }
    if !listing.languages.is_empty() && kind != EventKind::ImageTextPair {
        let any: Vec<String> =
            listing.languages.iter().map(|l| format!("s.language LIKE {}", literal(&format!("{l}%")))).collect();
        filters.push(format!("({})", any.join(" OR ")));
    }
    if !listing.licenses.is_empty() && kind == EventKind::ImageTextPair {
        filters.push(in_list("t.license", &listing.licenses));
    }
    format!(
        "SELECT t.* EXCLUDE (day), s.quality_score, s.language FROM {table} t \
         JOIN ({LATEST_SCORES}) s ON s.subject_event_id = t.event_id WHERE {}",
        filters.join(" AND ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ListingSpec {
        ListingSpec {
            listing_id: "l".into(),
            version: 1,
            title: "t".into(),
            description: String::new(),
            kinds: vec![EventKind::ChatTurn, EventKind::ImageTextPair],
            min_score: Some(0.5),
            languages: vec!["en".into()],
            licenses: vec!["CC-BY-4.0".into()],
            from: None,
            to: None,
            price: 1,
            terms: "t".into(),
        }
    }

    #[test]
    fn filters_follow_the_kind_and_quote_what_they_embed() {
        let granted = BTreeSet::from(["o'brien".to_string()]);
        let chat = listing_sql(&spec(), EventKind::ChatTurn, &granted);
        assert!(chat.contains("FROM chat_turns t"), "{chat}");
        assert!(chat.contains("t.contributor_id IN ('o''brien')"), "{chat}");
        assert!(chat.contains("s.language LIKE 'en%'") && !chat.contains("license"), "{chat}");
        let images = listing_sql(&spec(), EventKind::ImageTextPair, &granted);
        assert!(images.contains("t.license IN ('CC-BY-4.0')") && !images.contains("LIKE"), "{images}");
    }

    #[test]
    fn nobody_granted_means_no_rows() {
        let sql = listing_sql(&spec(), EventKind::ChatTurn, &BTreeSet::new());
        assert!(sql.contains("AND FALSE"), "{sql}");
    }
}
