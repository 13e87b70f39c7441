//! Topic names: the log that everything else is a projection of.
//!
//! Every intake topic is keyed by contributor id, so one contributor's events stay in order
//! within one partition (what rewards and spam detection need).

use crate::EventKind;

/// Scores topic: one [`QualityScore`](crate::QualityScore) per scored submission
/// and scorer version, keyed by contributor id.
pub const QUALITY_SCORES: &str = "gata.quality_scores.v1";

/// DVA votes topic: one [`QualityScore`](crate::QualityScore) with a `validator` per
/// image-text pair and DVA worker, when several workers score each pair (`dva.replicas` > 1);
/// keyed by the pair's contributor id, so every vote on a pair lands in one partition.
pub const DVA_VOTES: &str = "gata.dva_votes.v1";

/// Marketplace topic: one [`MarketEvent`](crate::MarketEvent) per listing, grant,
/// revoke or purchase, keyed by listing id (listing-wide grants by contributor id).
pub const MARKETPLACE: &str = "gata.marketplace.v1";

/// Review labels topic: one [`ReviewLabel`](crate::ReviewLabel) per reviewer's judgement of an
/// image-text pair, keyed by the pair's event id, so every label of a pair stays in order.
pub const REVIEW_LABELS: &str = "gata.review_labels.v1";

/// Dead-letter topic: records that could not be decoded or validated, with the reason in headers.
pub const DEAD_LETTERS: &str = "gata.dlq.v1";

/// Header naming the contract (e.g. `chat_turn.v1`) of a record's value.
pub const SCHEMA_HEADER: &str = "gata-schema";
/// Dead-letter header: the topic the record was read from.
pub const DLQ_SOURCE_TOPIC: &str = "gata-dlq-topic";
/// Dead-letter header: the partition the record was read from.
pub const DLQ_SOURCE_PARTITION: &str = "gata-dlq-partition";
/// Dead-letter header: the offset the record was read from.
pub const DLQ_SOURCE_OFFSET: &str = "gata-dlq-offset";
/// Dead-letter header: why the record was rejected.
pub const DLQ_REASON: &str = "gata-dlq-reason";

/// The intake topic for one event kind.
pub fn intake_topic(kind: EventKind) -> &'static str {
    match kind {
        EventKind::ChatTurn => "gata.chat_turns.v1",
        EventKind::Preference => "gata.preferences.v1",
        EventKind::ImageTextPair => "gata.image_text_pairs.v1",
    }
}

/// The event kind whose intake topic this is, if any.
pub fn kind_of_topic(topic: &str) -> Option<EventKind> {
    EventKind::ALL.into_iter().find(|k| intake_topic(*k) == topic)
}

/// What a topic that lands in the lake carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Feed {
    /// Submissions of one kind.
    Intake(EventKind),
    /// Quality scores.
    QualityScores,
    /// DVA workers' votes.
    DvaVotes,
    /// Marketplace events.
    Market,
    /// Reviewers' labels of image-text pairs.
    ReviewLabels,
}

impl Feed {
    /// Every feed: the intake topics, then the scores, votes, marketplace events and labels.
    pub const ALL: [Feed; 7] = [
        Feed::Intake(EventKind::ChatTurn),
        Feed::Intake(EventKind::Preference),
        Feed::Intake(EventKind::ImageTextPair),
        Feed::QualityScores,
        Feed::DvaVotes,
        Feed::Market,
        Feed::ReviewLabels,
    ];

    /// Its topic.
    pub fn topic(self) -> &'static str {
        match self {
            Feed::Intake(kind) => intake_topic(kind),
            Feed::QualityScores => QUALITY_SCORES,
            Feed::DvaVotes => DVA_VOTES,
            Feed::Market => MARKETPLACE,
            Feed::ReviewLabels => REVIEW_LABELS,
        }
    }

    /// The feed whose topic this is, if any.
    pub fn of_topic(topic: &str) -> Option<Feed> {
        Feed::ALL.into_iter().find(|f| f.topic() == topic)
    }
}

/// Every topic the platform creates at startup.
pub fn all_topics() -> Vec<&'static str> {
    let mut topics: Vec<_> = Feed::ALL.into_iter().map(Feed::topic).collect();
    topics.push(DEAD_LETTERS);
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_round_trip_to_kinds() {
        for kind in EventKind::ALL {
            assert_eq!(kind_of_topic(intake_topic(kind)), Some(kind));
        }
        assert_eq!(kind_of_topic(DEAD_LETTERS), None);
        assert_eq!(kind_of_topic(QUALITY_SCORES), None);
        for feed in Feed::ALL {
            assert_eq!(Feed::of_topic(feed.topic()), Some(feed));
        }
        assert_eq!(Feed::of_topic(DEAD_LETTERS), None);
    }
}
