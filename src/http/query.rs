//! `ApiQuery`: the one way a handler reads its query string. A parameter
//! the handler does not take is a 400 that names it (with a close accepted
//! name when there is one) and lists the accepted ones, so a typo such as
//! `topc=` is an error instead of a silently unfiltered answer. Every other
//! bad query (a `limit` that is not a number) is a 400 problem document too.
//!
//! The accepted names come from the parameter struct's own `Deserialize`
//! (the field list serde derives, renames included), so they cannot drift
//! from what the handler reads. Handlers without parameters take
//! `ApiQuery<NoParams>`.

use axum::extract::{FromRequestParts, Query};
use axum::http::Uri;
use axum::http::request::Parts;
use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};

use super::ApiError;

/// A query string deserialized into `T` (a struct with named fields), whose
/// rejection is a 400 problem document.
pub struct ApiQuery<T>(pub T);

/// The parameters of an endpoint that takes none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        check_names(&parts.uri, accepted::<T>())?;
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// # Errors
/// 400 naming every parameter of `uri` that is not in `accepted`.
fn check_names(uri: &Uri, accepted: &[&str]) -> Result<(), ApiError> {
    // A query that does not even decode is left to the typed extractor,
    // whose message says what is wrong with it.
    let Ok(Query(pairs)) = Query::<Vec<(String, String)>>::try_from_uri(uri) else {
        return Ok(());
    };
    let mut unknown: Vec<&str> = Vec::new();
    for (name, _) in &pairs {
        if !accepted.contains(&name.as_str()) && !unknown.contains(&name.as_str()) {
            unknown.push(name);
        }
    }
    if unknown.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = unknown
        .iter()
        .map(|name| match closest(name, accepted) {
            Some(close) => format!("{name:?} (did you mean {close:?}?)"),
            None => format!("{name:?}"),
        })
        .collect();
    let accepts = if accepted.is_empty() {
        "takes no query parameters".to_owned()
    } else {
        format!("accepts only: {}", accepted.join(", "))
    };
    Err(ApiError::BadRequest(format!(
        "unknown query parameter(s) {}; {} {accepts}",
        named.join(", "),
        uri.path()
    )))
}

/// The accepted name closest to `name`, when it is close enough to be a
/// typo: at most a third of its letters (at least one) edited.
fn closest<'a>(name: &str, accepted: &[&'a str]) -> Option<&'a str> {
    let allowed = (name.chars().count() / 3).max(1);
    accepted
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// The field names `T`'s derived `Deserialize` reads (empty for anything
/// but a struct with named fields). Asks serde for them by handing `T` a
/// deserializer that records the field list and then stops: no allocation.
fn accepted<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(FieldNames {
        fields: &mut fields,
    });
    fields.unwrap_or_default()
}

/// A deserializer that only records the fields of the struct asked for.
struct FieldNames<'a> {
    fields: &'a mut Option<&'static [&'static str]>,
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.fields = Some(fields);
        Err(de::Error::custom("only field names are read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{ListParams, SubscribeParams};

    fn check(uri: &str, accepted: &[&str]) -> Result<(), String> {
        let uri: Uri = uri.parse().expect("test URI");
        check_names(&uri, accepted).map_err(|e| e.to_string())
    }

    #[test]
    fn accepted_names_come_from_the_params_struct() {
        assert_eq!(
            accepted::<ListParams>(),
            [
                "topic",
                "after",
                "before",
                "limit",
                "order",
                "since",
                "until",
                "timestamp_since",
                "timestamp_until",
                "source",
                "q"
            ]
        );
        assert_eq!(accepted::<SubscribeParams>(), ["topic", "from"]);
        assert!(accepted::<NoParams>().is_empty());
    }

    #[test]
    fn unknown_names_are_named_with_a_suggestion_and_the_accepted_list() {
        let accepted = ["topic", "after", "limit"];
        assert_eq!(check("/events?topic=a&after=1&limit=2", &accepted), Ok(()));
        assert_eq!(check("/events", &accepted), Ok(()));
        let error = check("/events?topc=a&since=x&since=y", &accepted).expect_err("unknown");
        assert_eq!(
            error,
            "unknown query parameter(s) \"topc\" (did you mean \"topic\"?), \"since\"; \
             /events accepts only: topic, after, limit"
        );
        let error = check("/stats?verbose=1", &[]).expect_err("none taken");
        assert!(
            error.ends_with("/stats takes no query parameters"),
            "{error}"
        );
    }

    #[test]
    fn only_close_names_are_suggested() {
        let accepted = ["topic", "after", "limit"];
        assert_eq!(closest("limt", &accepted), Some("limit"));
        assert_eq!(closest("afetr", &accepted), Some("after"));
        assert_eq!(closest("source", &accepted), None);
        assert_eq!(closest("x", &accepted), None);
    }
}
