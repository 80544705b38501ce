//! The byte form of a patient record inside its seal.
//!
//! Versioned JSON: compact enough, easy to evolve (a `v` field picks the decoder), and the
//! format lives here, apart from the wire format in `api`, so the two can change separately.
//! Decoding re-validates through `PatientRecord::new`, so nothing unvalidated ever comes out.

use haven_domain::patient::ContactKind;
use haven_domain::{ContactPoint, HumanName, Identifier, PatientRecord};
use serde::{Deserialize, Serialize};
use time::Date;
use time::macros::format_description;
use zeroize::Zeroizing;

use crate::{AppError, AppResult};

const DATE_FORMAT: &[time::format_description::FormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatientV1 {
    v: u8,
    family: String,
    given: Vec<String>,
    birth_date: String,
    identifiers: Vec<(String, String)>,
    contacts: Vec<(String, String)>,
}

pub(crate) fn encode_patient(record: &PatientRecord) -> AppResult<Zeroizing<Vec<u8>>> {
    let stored = PatientV1 {
        v: 1,
        family: record.name().family.clone(),
        given: record.name().given.clone(),
        birth_date: record
            .birth_date()
            .format(DATE_FORMAT)
            .map_err(|e| AppError::Unexpected(format!("formatting a birth date: {e}")))?,
        identifiers: record
            .identifiers()
            .iter()
            .map(|i| (i.system.clone(), i.value.clone()))
            .collect(),
        contacts: record
            .contacts()
            .iter()
            .map(|c| {
                let kind = match c.kind {
                    ContactKind::Phone => "phone",
                    ContactKind::Email => "email",
                };
                (kind.to_owned(), c.value.clone())
            })
            .collect(),
    };
    serde_json::to_vec(&stored)
        .map(Zeroizing::new)
        .map_err(|e| AppError::Unexpected(format!("encoding a patient: {e}")))
}

pub(crate) fn decode_patient(bytes: &[u8], today: Date) -> AppResult<PatientRecord> {
    let corrupt = |detail: String| AppError::Unexpected(format!("stored patient: {detail}"));
    let stored: PatientV1 = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if stored.v != 1 {
        return Err(corrupt(format!("unknown format version {}", stored.v)));
    }
    let birth_date =
        Date::parse(&stored.birth_date, DATE_FORMAT).map_err(|e| corrupt(e.to_string()))?;
    let contacts = stored
        .contacts
        .into_iter()
        .map(|(kind, value)| {
            let kind = match kind.as_str() {
                "phone" => ContactKind::Phone,
                "email" => ContactKind::Email,
                other => return Err(corrupt(format!("unknown contact kind {other}"))),
            };
            Ok(ContactPoint { kind, value })
        })
        .collect::<AppResult<Vec<_>>>()?;
    PatientRecord::new(
        HumanName {
            family: stored.family,
            given: stored.given,
        },
        birth_date,
        stored
            .identifiers
            .into_iter()
            .map(|(system, value)| Identifier { system, value })
            .collect(),
        contacts,
        today,
    )
    .map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn format_date(date: Date) -> String {
    date.format(DATE_FORMAT).unwrap_or_default()
}
