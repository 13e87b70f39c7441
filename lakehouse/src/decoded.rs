//! Records of the log decoded for the lake: what each holds, and the records that cannot land.

use gata_contract::{
    topics::Feed,
    {CheckedImage, DecodedImage, Event, Limits, LogRecord, MarketEvent, QualityScore, ReviewLabel, Violation},
};

use crate::TableId;

/// What a decoded record holds.
#[derive(Debug, Clone)]
pub enum Body {
    /// A submission from an intake topic.
    Submission {
        /// The event.
        event: Event,
        /// The checked image of an image-text pair sent inline (a URL's is fetched by the DVA).
        image: Option<DecodedImage>,
    },
    /// A score from the scores topic.
    Score(QualityScore),
    /// A DVA worker's vote from the votes topic.
    Vote(QualityScore),
    /// A marketplace event.
    Market(MarketEvent),
    /// A reviewer's label.
    Label(ReviewLabel),
}

/// One record of a feed, decoded and validated.
#[derive(Debug, Clone)]
pub struct LakeRecord {
    /// The record as the log holds it.
    pub record: LogRecord,
    /// The decoded value.
    pub body: Body,
}

impl Body {
    /// Decodes and validates the value of a record of `feed`; the violations say why it cannot
    /// land. Timestamps are not re-checked against the clock: the log is replayed long after
    /// intake.
    pub fn decode(feed: Feed, payload: &[u8], limits: &Limits) -> Result<Body, Vec<Violation>> {
        let replay_limits = limits.for_replay();
        Ok(match feed {
            Feed::Intake(kind) => {
                let event = Event::parse(kind, payload, &replay_limits)?;
                let image = match &event {
                    Event::ImageTextPair(pair) => match pair.image.check(&replay_limits).map_err(|v| vec![v])? {
                        CheckedImage::Inline(image) => Some(image),
                        CheckedImage::Url(_) => None,
                    },
                    _ => None,
                };
                Body::Submission { event, image }
            }
            Feed::QualityScores => {
                let score = QualityScore::parse(payload, &replay_limits)?;
                if score.validator.is_some() {
                    return Err(vec![Violation::new("validator", "a vote belongs on the DVA votes topic")]);
                }
                Body::Score(score)
            }
            Feed::DvaVotes => {
                let vote = QualityScore::parse(payload, &replay_limits)?;
                if vote.validator.is_none() {
                    return Err(vec![Violation::new("validator", "a vote must name its validator")]);
                }
                Body::Vote(vote)
            }
            Feed::Market => Body::Market(MarketEvent::parse(payload, &replay_limits)?),
            Feed::ReviewLabels => Body::Label(ReviewLabel::parse(payload, &replay_limits)?),
        })
    }
}

impl LakeRecord {
    /// Decodes and validates `record`, of `feed` (see [`Body::decode`]).
    pub fn decode(feed: Feed, record: LogRecord, limits: &Limits) -> Result<LakeRecord, Vec<Violation>> {
        let body = Body::decode(feed, &record.payload, limits)?;
        Ok(LakeRecord { record, body })
    }

    /// The id silver tables deduplicate on.
    pub fn event_id(&self) -> uuid::Uuid {
        match &self.body {
            Body::Submission { event, .. } => event.event_id(),
            Body::Score(score) | Body::Vote(score) => score.event_id,
            Body::Market(event) => event.event_id,
            Body::Label(label) => label.event_id,
        }
    }

    /// The silver table this record lands in.
    pub fn silver(&self) -> TableId {
        match &self.body {
            Body::Submission { event, .. } => TableId::silver(event.kind()),
            Body::Score(_) => TableId::QualityScores,
            Body::Vote(_) => TableId::DvaVotes,
            Body::Market(_) => TableId::MarketEvents,
            Body::Label(_) => TableId::ReviewLabels,
        }
    }

    pub(crate) fn event(&self) -> Option<&Event> {
        match &self.body {
            Body::Submission { event, .. } => Some(event),
            Body::Score(_) | Body::Vote(_) | Body::Market(_) | Body::Label(_) => None,
        }
    }

    pub(crate) fn day(&self) -> String {
        self.record.received_at.format("%Y-%m-%d").to_string()
    }
}

/// A record that cannot land, and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The record as the log holds it.
    pub record: LogRecord,
    /// Every reason, joined.
    pub reason: String,
}
