//! The patient record (demographics): what it holds and what makes it valid.
//!
//! A `PatientRecord` can only be built through [`PatientRecord::new`], which checks every
//! field, so code inside Haven never re-validates. Its `Debug` prints no field values: a
//! record that ends up in a log line or an error message reveals nothing about the patient.

use std::fmt;

use time::Date;
use time::macros::date;

/// Bounds on every field, named with their unit (limits on everything).
pub mod limits {
    pub const NAME_PART_CHARS_MAX: usize = 100;
    pub const GIVEN_NAMES_MAX: usize = 5;
    pub const IDENTIFIERS_MAX: usize = 10;
    pub const IDENTIFIER_SYSTEM_CHARS_MAX: usize = 200;
    pub const IDENTIFIER_VALUE_CHARS_MAX: usize = 100;
    pub const CONTACTS_MAX: usize = 10;
    pub const CONTACT_VALUE_CHARS_MAX: usize = 200;
}

/// The earliest birth date Haven accepts; anything before it is almost surely a typo.
pub const BIRTH_DATE_MIN: Date = date!(1890 - 01 - 01);

/// A field failed validation. `field` is a path such as `name.given[1]`, so the caller can
/// point at the exact input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct HumanName {
    pub family: String,
    pub given: Vec<String>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Identifier {
    /// The namespace of the value, e.g. `urn:oid:2.16.840.1.113883.4.1` or a clinic's MRN URI.
    pub system: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactKind {
    Phone,
    Email,
}

#[derive(Clone, PartialEq, Eq)]
pub struct ContactPoint {
    pub kind: ContactKind,
    pub value: String,
}

/// A validated patient record.
#[derive(Clone, PartialEq, Eq)]
pub struct PatientRecord {
    name: HumanName,
    birth_date: Date,
    identifiers: Vec<Identifier>,
    contacts: Vec<ContactPoint>,
}

impl PatientRecord {
    /// Validates and normalises (trims) every field. `today` bounds the birth date; it is a
    /// parameter so that the rule is testable with any clock.
    pub fn new(
        name: HumanName,
        birth_date: Date,
        identifiers: Vec<Identifier>,
        contacts: Vec<ContactPoint>,
        today: Date,
    ) -> Result<Self, ValidationError> {
        use limits::*;

        let family = text("name.family", &name.family, NAME_PART_CHARS_MAX)?;
        if name.given.len() > GIVEN_NAMES_MAX {
            return Err(ValidationError::new(
                "name.given",
                format!("at most {GIVEN_NAMES_MAX} given names"),
            ));
        }
        let given = name
            .given
            .iter()
            .enumerate()
            .map(|(i, g)| text(&format!("name.given[{i}]"), g, NAME_PART_CHARS_MAX))
            .collect::<Result<Vec<_>, _>>()?;

        if birth_date < BIRTH_DATE_MIN {
            return Err(ValidationError::new(
                "birth_date",
                format!("must not be before {BIRTH_DATE_MIN}"),
            ));
        }
        if birth_date > today {
            return Err(ValidationError::new(
                "birth_date",
                "must not be in the future",
            ));
        }

        if identifiers.len() > IDENTIFIERS_MAX {
            return Err(ValidationError::new(
                "identifiers",
                format!("at most {IDENTIFIERS_MAX} identifiers"),
            ));
        }
        let mut clean_identifiers: Vec<Identifier> = Vec::with_capacity(identifiers.len());
        for (i, identifier) in identifiers.iter().enumerate() {
            let system = text(
                &format!("identifiers[{i}].system"),
                &identifier.system,
                IDENTIFIER_SYSTEM_CHARS_MAX,
            )?;
            let value = text(
                &format!("identifiers[{i}].value"),
                &identifier.value,
                IDENTIFIER_VALUE_CHARS_MAX,
            )?;
            if clean_identifiers
                .iter()
                .any(|seen| seen.system == system && seen.value == value)
            {
                return Err(ValidationError::new(
                    format!("identifiers[{i}]"),
                    "duplicate identifier",
                ));
            }
            clean_identifiers.push(Identifier { system, value });
        }

        if contacts.len() > CONTACTS_MAX {
            return Err(ValidationError::new(
                "contacts",
                format!("at most {CONTACTS_MAX} contact points"),
            ));
        }
        let clean_contacts = contacts
            .iter()
            .enumerate()
            .map(|(i, contact)| {
                let field = format!("contacts[{i}].value");
                let value = text(&field, &contact.value, CONTACT_VALUE_CHARS_MAX)?;
                match contact.kind {
                    ContactKind::Email if !plausible_email(&value) => Err(ValidationError::new(
                        field,
                        "not an e-mail address (expected name@domain)",
                    )),
                    ContactKind::Phone if !plausible_phone(&value) => Err(ValidationError::new(
                        field,
                        "not a phone number (digits, spaces, +, -, parentheses; 5 to 20 digits)",
                    )),
                    _ => Ok(ContactPoint {
                        kind: contact.kind,
                        value,
                    }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            name: HumanName { family, given },
            birth_date,
            identifiers: clean_identifiers,
            contacts: clean_contacts,
        })
    }

    pub fn name(&self) -> &HumanName {
        &self.name
    }

    pub fn birth_date(&self) -> Date {
        self.birth_date
    }

    pub fn identifiers(&self) -> &[Identifier] {
        &self.identifiers
    }

    pub fn contacts(&self) -> &[ContactPoint] {
        &self.contacts
    }
    /// Only what identifies the person — name and birth date — for an access whose
    /// decision masks the rest ([`crate::Mask::Identification`]).
    pub fn identification_only(self) -> PatientRecord {
        PatientRecord {
            name: self.name,
            birth_date: self.birth_date,
            identifiers: Vec::new(),
            contacts: Vec::new(),
        }
    }

    /// The record as `mask` lets it be shown.
    pub fn masked(self, mask: crate::Mask) -> PatientRecord {
        match mask {
            crate::Mask::None => self,
            crate::Mask::Identification => self.identification_only(),
        }
    }
}

/// Health data never reaches a log through `Debug`.
impl fmt::Debug for PatientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PatientRecord { <redacted> }")
    }
}

impl fmt::Debug for HumanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HumanName { <redacted> }")
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Identifier { <redacted> }")
    }
}

impl fmt::Debug for ContactPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContactPoint {{ kind: {:?}, <redacted> }}", self.kind)
    }
}

/// Trimmed, non-empty, bounded text without control characters.
fn text(field: &str, value: &str, chars_max: usize) -> Result<String, ValidationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if trimmed.chars().count() > chars_max {
        return Err(ValidationError::new(
            field,
            format!("at most {chars_max} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

fn plausible_email(value: &str) -> bool {
    match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.chars().any(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

fn plausible_phone(value: &str) -> bool {
    let digits = value.chars().filter(char::is_ascii_digit).count();
    (5..=20).contains(&digits)
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Date = date!(2026 - 11 - 23);

    fn name(family: &str) -> HumanName {
        HumanName {
            family: family.into(),
            given: vec!["Ada".into()],
        }
    }

    fn valid() -> Result<PatientRecord, ValidationError> {
        PatientRecord::new(
            name("  Lovelace "),
            date!(1990 - 12 - 10),
            vec![Identifier {
                system: "urn:haven:mrn".into(),
                value: "MRN-1".into(),
            }],
            vec![ContactPoint {
                kind: ContactKind::Email,
                value: "ada@example.org".into(),
            }],
            TODAY,
        )
    }

    #[test]
    fn accepts_and_trims_a_valid_record() {
        let record = valid().unwrap();
        assert_eq!(record.name().family, "Lovelace");
    }

    #[test]
    fn debug_reveals_no_health_data() {
        let record = valid().unwrap();
        let printed = format!("{record:?} {:?} {:?}", record.name(), record.contacts());
        assert!(!printed.contains("Lovelace"));
        assert!(!printed.contains("ada@"));
    }

    #[test]
    fn rejects_future_birth_dates_and_names_the_field() {
        let error = PatientRecord::new(name("X"), date!(2030 - 01 - 01), vec![], vec![], TODAY)
            .unwrap_err();
        assert_eq!(error.field, "birth_date");
    }

    #[test]
    fn rejects_empty_family_names() {
        let error = PatientRecord::new(name("   "), date!(2000 - 01 - 01), vec![], vec![], TODAY)
            .unwrap_err();
        assert_eq!(error.field, "name.family");
    }

    #[test]
    fn rejects_bad_contacts_with_their_index() {
        let error = PatientRecord::new(
            name("X"),
            date!(2000 - 01 - 01),
            vec![],
            vec![
                ContactPoint {
                    kind: ContactKind::Phone,
                    value: "+1 555 0100".into(),
                },
                ContactPoint {
                    kind: ContactKind::Email,
                    value: "not-an-address".into(),
                },
            ],
            TODAY,
        )
        .unwrap_err();
        assert_eq!(error.field, "contacts[1].value");
    }

    #[test]
    fn rejects_duplicate_identifiers() {
        let id = Identifier {
            system: "s".into(),
            value: "v".into(),
        };
        let error = PatientRecord::new(
            name("X"),
            date!(2000 - 01 - 01),
            vec![id.clone(), id],
            vec![],
            TODAY,
        )
        .unwrap_err();
        assert_eq!(error.field, "identifiers[1]");
    }

    #[test]
    fn rejects_overlong_and_control_text() {
        let long = "x".repeat(limits::NAME_PART_CHARS_MAX + 1);
        assert!(
            PatientRecord::new(name(&long), date!(2000 - 01 - 01), vec![], vec![], TODAY).is_err()
        );
        assert!(
            PatientRecord::new(
                name("a\u{0}b"),
                date!(2000 - 01 - 01),
                vec![],
                vec![],
                TODAY
            )
            .is_err()
        );
    }
}
