//! Consistent reads across query instances. Every instance applies the marketplace log on its
//! own, milliseconds apart; the instance that took a write answers after applying it. So that
//! any other instance can be read consistently too, a write's answer carries its position in
//! the log (`x-gata-log-position: <partition>:<offset>`), and a request that sends positions
//! back (`x-gata-after`, comma-separated) is served only once this instance has applied them:
//! it waits up to [`WAIT`], then answers 503 with `Retry-After`. Grants, revokes, listings and
//! purchases then show on every instance, in SQL and listing views included.

use std::{sync::Mutex, time::Duration};

use axum::{
    extract::{Request, State},
    http::{HeaderName, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};
use gata_contract::Violation;

use crate::{MarketError, follower::Followed};

/// The header a write's log position is answered in.
pub const POSITION_HEADER: HeaderName = HeaderName::from_static("x-gata-log-position");
/// The header a request names the positions it must see in.
pub const AFTER_HEADER: HeaderName = HeaderName::from_static("x-gata-after");
/// Longest a request waits for its positions to be applied.
pub const WAIT: Duration = Duration::from_secs(10);
/// Most positions one request may name.
pub const MAX_POSITIONS: usize = 64;

tokio::task_local! {
    static WRITTEN: Mutex<Vec<(i32, i64)>>;
}

/// Records that the request being answered wrote at `offset` of `partition` (its answer will
/// say so).
pub(crate) fn wrote(partition: i32, offset: i64) {
    let _ = WRITTEN.try_with(|w| w.lock().unwrap_or_else(|p| p.into_inner()).push((partition, offset)));
}

/// The positions named by an `x-gata-after` value: `<partition>:<offset>`, comma-separated.
pub fn parse_positions(value: &str) -> Result<Vec<(i32, i64)>, Violation> {
    let bad = || Violation::new(AFTER_HEADER.as_str(), "expected <partition>:<offset>, comma-separated");
    let positions: Vec<(i32, i64)> = value
        .split(',')
        .map(|p| {
            let (partition, offset) = p.trim().split_once(':').ok_or_else(bad)?;
            let partition = partition.parse::<i32>().ok().filter(|p| *p >= 0).ok_or_else(bad)?;
            Ok((partition, offset.parse::<i64>().ok().filter(|o| *o >= 0).ok_or_else(bad)?))
        })
        .collect::<Result<_, Violation>>()?;
    if positions.len() > MAX_POSITIONS {
        return Err(Violation::too_large(AFTER_HEADER.as_str(), format!("at most {MAX_POSITIONS} positions")));
    }
    Ok(positions)
}

/// Middleware: waits for the request's `x-gata-after` positions, then answers with the
/// position of every marketplace write it made.
pub async fn layer(State(followed): State<Followed>, request: Request, next: Next) -> Response {
    if let Some(value) = request.headers().get(&AFTER_HEADER) {
        let positions =
            value.to_str().map_err(|_| Violation::new(AFTER_HEADER.as_str(), "not ASCII")).and_then(parse_positions);
        let positions = match positions {
            Ok(positions) => positions,
            Err(violation) => return MarketError::Invalid(vec![violation]).into_response(),
        };
        for (partition, offset) in positions {
            if let Err(e) = followed.wait_for(partition, offset, WAIT).await {
                return e.into_response();
            }
        }
    }
    WRITTEN
        .scope(Mutex::new(Vec::new()), async move {
            let mut response = next.run(request).await;
            let written = WRITTEN.with(|w| std::mem::take(&mut *w.lock().unwrap_or_else(|p| p.into_inner())));
            let value = written.iter().map(|(p, o)| format!("{p}:{o}")).collect::<Vec<_>>().join(",");
            if let (false, Ok(value)) = (written.is_empty(), HeaderValue::from_str(&value)) {
                response.headers_mut().insert(POSITION_HEADER, value);
            }
            response
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_bad_ones_are_named() {
        assert_eq!(parse_positions("0:17, 3:0").expect("two"), [(0, 17), (3, 0)]);
        for bad in ["", "0", "0:x", "-1:3", "1:-3", "a:b", "0:1,"] {
            assert!(parse_positions(bad).is_err(), "{bad:?}");
        }
        let many = vec!["0:1"; MAX_POSITIONS + 1].join(",");
        assert!(parse_positions(&many).expect_err("too many").too_large);
    }
}
