//! `haven import`: loads FHIR data written elsewhere (Bundles, NDJSON) into a running Haven
//! through its FHIR API, as an integration: a token of the `integration` role, which may add
//! patients and chart entries and read nothing back. Going through the API means every
//! record is validated, sealed and audited exactly as if a client had sent it, and the
//! server keeps serving meanwhile.
//!
//! Every resource gets a new server id. References between the imported resources, by
//! `Type/id`, by `fullUrl` or by `urn:uuid:`, are rewritten to the new ids: within one
//! transaction the server resolves them (`urn:uuid:`), across transactions and files the
//! importer remembers what it created. So patients go first (each on its own, as Haven
//! creates a `Patient` outside transactions), then the rest in transactions of at most
//! [`ENTRIES_PER_TRANSACTION_MAX`] entries, ordered so that what is referred to comes first.
//! A transaction that fails is reported with its file and line or entry and the server's
//! explanation; the others are still imported. Nothing is partly written: each transaction
//! applies whole or not at all.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The most entries one transaction carries.
pub const ENTRIES_PER_TRANSACTION_MAX: usize = 200;
/// The most bytes one transaction's body carries (the server accepts 1 MiB).
pub const TRANSACTION_BYTES_MAX: usize = 900 * 1024;
/// The largest Bundle file read whole; NDJSON files are read line by line, at any size.
pub const BUNDLE_FILE_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// The most failures listed one by one in the summary (all are counted).
pub const FAILURES_LISTED_MAX: usize = 50;
/// The most entries one transaction may lose to refusals before the rest of it is given up.
pub const CULPRITS_PER_TRANSACTION_MAX: usize = 10;
/// How long one request may take before the import gives up on the server.
pub const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Where to send the data and as whom.
pub struct Target {
    /// The server's base URL, such as `http://127.0.0.1:8080`.
    pub url: String,
    /// The integration's token (from `HAVEN_TOKEN` or a file, never an argument).
    pub token: String,
    /// A PEM certificate to trust for `https://` (Haven trusts no other roots).
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Target {
    // The token is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("token", &"…")
            .finish_non_exhaustive()
    }
}

/// One resource to import and where it came from.
struct Item {
    resource: Value,
    full_url: Option<String>,
    /// `file:line` or `file#entry`, for the report.
    origin: String,
}

/// One resource that was not imported, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub origin: String,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Resources created, by type.
    pub created: BTreeMap<String, u64>,
    /// Resources not created (the first [`FAILURES_LISTED_MAX`] are kept).
    pub failures: Vec<Failure>,
    pub failed: u64,
    pub files: usize,
    pub elapsed: Duration,
}

impl Summary {
    pub fn created_total(&self) -> u64 {
        self.created.values().sum()
    }

    fn fail(&mut self, origin: &str, reason: impl Into<String>) {
        self.failed += 1;
        if self.failures.len() < FAILURES_LISTED_MAX {
            self.failures.push(Failure {
                origin: origin.to_owned(),
                reason: reason.into(),
            });
        }
    }

    /// The report printed at the end.
    pub fn render(&self) -> String {
        let total = self.created_total();
        let seconds = self.elapsed.as_secs_f64().max(0.001);
        let mut text = format!(
            "Imported {total} resources from {} file(s) in {seconds:.1} s ({:.0} resources/s).\n",
            self.files,
            total as f64 / seconds
        );
        for (resource_type, count) in &self.created {
            text.push_str(&format!("  {resource_type:<24} {count:>9}\n"));
        }
        if self.failed > 0 {
            text.push_str(&format!("{} resource(s) were not imported:\n", self.failed));
            for failure in &self.failures {
                text.push_str(&format!("  {}: {}\n", failure.origin, failure.reason));
            }
            if self.failed as usize > self.failures.len() {
                text.push_str(&format!(
                    "  … and {} more\n",
                    self.failed as usize - self.failures.len()
                ));
            }
        }
        text
    }
}

/// A problem that stops the whole import: the server cannot be reached, or the token
/// may not import.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(String);

/// The order in which types are created, so that what is referred to exists first:
/// the directory, then visits, then what happens in them, then reports that gather
/// results, then requests about records.
fn tier(resource_type: &str) -> u8 {
    match resource_type {
        "Patient" => 0,
        "Organization" | "Practitioner" | "Questionnaire" => 1,
        "PractitionerRole" => 2,
        "Encounter" | "Appointment" => 3,
        "DiagnosticReport" => 5,
        "Task" => 6,
        _ => 4,
    }
}

fn resource_type_of(resource: &Value) -> &str {
    resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The importer: an HTTP client and what it has created so far.
pub struct Importer {
    client: reqwest::Client,
    base: String,
    authorization: String,
    /// Source reference (`Type/id`, a `fullUrl`, `urn:uuid:…`) → `Type/new-id`.
    created: HashMap<String, String>,
    pub summary: Summary,
    on_progress: Box<dyn FnMut(u64, u64) + Send>,
    resources_seen: u64,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("base", &self.base)
            .field("created", &self.created.len())
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl Importer {
    /// `on_progress(bytes, resources)` is called as input is consumed.
    pub fn new(
        target: Target,
        on_progress: Box<dyn FnMut(u64, u64) + Send>,
    ) -> anyhow::Result<Importer> {
        let base = target.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            bail!("--url: `{base}` is not an http:// or https:// address");
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS))
            .use_rustls_tls();
        if let Some(pem) = &target.ca_pem {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(pem).context("--ca-file: not a PEM certificate")?,
            );
        } else if base.starts_with("https://") {
            bail!("an https:// server needs --ca-file: the certificate to trust");
        }
        Ok(Importer {
            client: builder.build().context("an HTTP client")?,
            base,
            authorization: format!("Bearer {}", target.token.trim()),
            created: HashMap::new(),
            summary: Summary::default(),
            on_progress,
            resources_seen: 0,
        })
    }

    /// Imports `files` (Bundles as `.json`, resources one per line as `.ndjson`): NDJSON
    /// files whose first resource is a Patient go first, whatever order they are named in.
    pub async fn import(&mut self, files: &[PathBuf]) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut ordered = Vec::with_capacity(files.len());
        for file in files {
            ordered.push((first_tier(file)?, file.clone()));
        }
        ordered.sort_by_key(|(tier, _)| *tier);
        let mut bytes_before = 0;
        for (_, file) in &ordered {
            let size = std::fs::metadata(file)
                .with_context(|| format!("{}", file.display()))?
                .len();
            if is_ndjson(file) {
                self.import_ndjson(file, bytes_before).await?;
            } else {
                self.import_bundle_file(file, size).await?;
            }
            bytes_before += size;
            (self.on_progress)(bytes_before, self.resources_seen);
            self.summary.files += 1;
        }
        self.summary.elapsed = started.elapsed();
        Ok(())
    }

    async fn import_ndjson(&mut self, file: &Path, bytes_before: u64) -> anyhow::Result<()> {
        let name = file.display().to_string();
        let reader = std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {name}"))?,
        );
        let mut items = Vec::new();
        let mut consumed = 0u64;
        for (index, line) in reader.lines().enumerate() {
            let line = line.with_context(|| format!("reading {name}"))?;
            consumed += line.len() as u64 + 1;
            let origin = format!("{name}:{}", index + 1);
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(resource) if resource.is_object() => items.push(Item {
                    resource,
                    full_url: None,
                    origin,
                }),
                Ok(_) => self.summary.fail(&origin, "not a JSON object"),
                Err(e) => self
                    .summary
                    .fail(&origin, format!("not valid JSON (column {})", e.column())),
            }
            if items.len() == ENTRIES_PER_TRANSACTION_MAX {
                self.import_items(std::mem::take(&mut items)).await?;
                (self.on_progress)(bytes_before + consumed, self.resources_seen);
            }
        }
        self.import_items(items).await
    }

    async fn import_bundle_file(&mut self, file: &Path, size: u64) -> anyhow::Result<()> {
        let name = file.display().to_string();
        if size > BUNDLE_FILE_BYTES_MAX {
            bail!(
                "{name}: a Bundle file of at most {} MiB is read whole; split it, or write it as NDJSON",
                BUNDLE_FILE_BYTES_MAX / (1024 * 1024)
            );
        }
        let bytes = std::fs::read(file).with_context(|| format!("reading {name}"))?;
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(e) => {
                self.summary.fail(
                    &name,
                    format!("not valid JSON (line {}, column {})", e.line(), e.column()),
                );
                return Ok(());
            }
        };
        if resource_type_of(&value) != "Bundle" {
            let item = Item {
                resource: value,
                full_url: None,
                origin: name,
            };
            return self.import_items(vec![item]).await;
        }
        let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            kind,
            "transaction" | "batch" | "collection" | "searchset" | "document"
        ) {
            self.summary.fail(
                &name,
                format!("a Bundle of type `{kind}` holds no resources to import"),
            );
            return Ok(());
        }
        let entries = match value.get("entry") {
            Some(Value::Array(entries)) => entries.clone(),
            _ => Vec::new(),
        };
        let mut items = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let origin = format!("{name}#entry[{index}]");
            let method = entry
                .pointer("/request/method")
                .and_then(Value::as_str)
                .unwrap_or("POST");
            if !matches!(method, "POST" | "PUT") {
                self.summary.fail(
                    &origin,
                    format!("a {method} entry: an import only adds resources"),
                );
                continue;
            }
            let full_url = entry
                .get("fullUrl")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match entry.get("resource") {
                Some(resource) if resource.is_object() => items.push(Item {
                    resource: resource.clone(),
                    full_url,
                    origin,
                }),
                _ => self.summary.fail(&origin, "an entry without a resource"),
            }
        }
        self.import_items(items).await
    }

    /// Imports one group of resources: patients one by one, then the rest in transactions.
    async fn import_items(&mut self, items: Vec<Item>) -> anyhow::Result<()> {
        self.resources_seen += items.len() as u64;
        let (patients, mut others): (Vec<Item>, Vec<Item>) = items
            .into_iter()
            .partition(|item| resource_type_of(&item.resource) == "Patient");
        for patient in patients {
            self.import_patient(patient).await?;
        }
        others.sort_by_key(|item| tier(resource_type_of(&item.resource)));
        let mut chunk: Vec<Item> = Vec::new();
        let mut chunk_bytes = 0;
        for item in others {
            let bytes = item.resource.to_string().len();
            if !chunk.is_empty()
                && (chunk.len() == ENTRIES_PER_TRANSACTION_MAX
                    || chunk_bytes + bytes > TRANSACTION_BYTES_MAX)
            {
                self.import_transaction(std::mem::take(&mut chunk)).await?;
                chunk_bytes = 0;
            }
            chunk_bytes += bytes;
            chunk.push(item);
        }
        if !chunk.is_empty() {
            self.import_transaction(chunk).await?;
        }
        Ok(())
    }

    /// The names a resource may be referred to by in its source.
    fn source_names(item: &Item) -> Vec<String> {
        let mut names = Vec::new();
        let kind = resource_type_of(&item.resource);
        if let Some(id) = item.resource.get("id").and_then(Value::as_str) {
            names.push(format!("{kind}/{id}"));
        }
        if let Some(full_url) = &item.full_url {
            names.push(full_url.clone());
        }
        names
    }

    async fn import_patient(&mut self, mut item: Item) -> anyhow::Result<()> {
        let names = Self::source_names(&item);
        strip_server_fields(&mut item.resource);
        let response = self
            .send("/fhir/Patient", &item.resource)
            .await
            .map_err(anyhow::Error::from)?;
        match response {
            Answer::Created(location) => {
                if let Some(new) = reference_of_location(&location) {
                    for name in names {
                        self.created.insert(name, new.clone());
                    }
                    self.count("Patient", 1);
                } else {
                    self.summary
                        .fail(&item.origin, "the server named no new id");
                }
            }
            Answer::Refused(reason) => self.summary.fail(&item.origin, reason),
            Answer::Body(_) => self
                .summary
                .fail(&item.origin, "the server answered without creating it"),
        }
        Ok(())
    }

    /// Sends `items` as one transaction. When the server refuses it because of one entry,
    /// that entry is reported and the rest sent again, so one bad resource costs only
    /// itself (up to [`CULPRITS_PER_TRANSACTION_MAX`] times).
    async fn import_transaction(&mut self, mut items: Vec<Item>) -> anyhow::Result<()> {
        for _ in 0..=CULPRITS_PER_TRANSACTION_MAX {
            if items.is_empty() {
                return Ok(());
            }
            match self.send_transaction(&items).await? {
                Sent::Applied(locations) => {
                    for (at, item) in items.iter().enumerate() {
                        match locations.get(at).cloned().flatten() {
                            Some(new) => {
                                for name in Self::source_names(item) {
                                    self.created.insert(name, new.clone());
                                }
                                self.count(resource_type_of(&item.resource), 1);
                            }
                            None => self
                                .summary
                                .fail(&item.origin, "the server named no new id"),
                        }
                    }
                    return Ok(());
                }
                Sent::Refused {
                    reason,
                    at: Some(at),
                } if at < items.len() => {
                    let culprit = items.remove(at);
                    self.summary
                        .fail(&culprit.origin, entry_reason(&reason, at));
                }
                Sent::Refused { reason, .. } => {
                    for item in &items {
                        self.summary.fail(&item.origin, reason.clone());
                    }
                    return Ok(());
                }
            }
        }
        for item in &items {
            self.summary.fail(
                &item.origin,
                "not imported: too many other entries of its transaction were refused",
            );
        }
        Ok(())
    }

    async fn send_transaction(&self, items: &[Item]) -> anyhow::Result<Sent> {
        // Within the transaction each resource is `urn:uuid:…`, which the server resolves.
        let mut pending: HashMap<String, String> = HashMap::new();
        let mut urns = Vec::with_capacity(items.len());
        for item in items {
            let urn = format!("urn:uuid:{}", uuid::Uuid::new_v4());
            for name in Self::source_names(item) {
                pending.insert(name, urn.clone());
            }
            urns.push(urn);
        }
        let entries: Vec<Value> = items
            .iter()
            .zip(&urns)
            .map(|(item, urn)| {
                let mut resource = item.resource.clone();
                strip_server_fields(&mut resource);
                rewrite_references(&mut resource, &self.created, &pending);
                json!({
                    "fullUrl": urn,
                    "resource": resource,
                    "request": {"method": "POST", "url": resource_type_of(&item.resource)},
                })
            })
            .collect();
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        Ok(match self.send("/fhir", &bundle).await? {
            Answer::Body(answer) => Sent::Applied(
                answer
                    .get("entry")
                    .and_then(Value::as_array)
                    .map(|entries| {
                        entries
                            .iter()
                            .map(|e| {
                                e.pointer("/response/location")
                                    .and_then(Value::as_str)
                                    .and_then(reference_of_location)
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Answer::Refused(reason) => Sent::Refused {
                at: entry_index(&reason),
                reason,
            },
            Answer::Created(_) => Sent::Refused {
                reason: "the server did not answer the transaction".into(),
                at: None,
            },
        })
    }

    fn count(&mut self, resource_type: &str, n: u64) {
        *self
            .summary
            .created
            .entry(resource_type.to_owned())
            .or_default() += n;
    }

    /// POSTs `body`; a refusal of the caller (401, 403 on everything) is fatal.
    async fn send(&self, path: &str, body: &Value) -> Result<Answer, Fatal> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("authorization", &self.authorization)
            .header("content-type", "application/fhir+json")
            .header("accept", "application/fhir+json")
            .header("prefer", "return=minimal")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| Fatal(format!("{}: the server cannot be reached ({e})", self.base)))?;
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .text()
            .await
            .map_err(|e| Fatal(format!("reading the server's answer: {e}")))?;
        let outcome = || outcome_text(&text).unwrap_or_else(|| format!("HTTP {status}"));
        match status.as_u16() {
            200 | 201 if location.is_some() && path != "/fhir" => {
                Ok(Answer::Created(location.unwrap_or_default()))
            }
            200 | 201 => serde_json::from_str(&text)
                .map(Answer::Body)
                .map_err(|e| Fatal(format!("the server's answer is not JSON: {e}"))),
            401 => Err(Fatal(format!(
                "the token was refused ({}): mint one with `haven admin token --role integration` and pass it in HAVEN_TOKEN or --token-file",
                outcome()
            ))),
            403 => Err(Fatal(format!(
                "the token may not import ({}): an import needs a token of the integration role",
                outcome()
            ))),
            413 => Ok(Answer::Refused(
                "too large for one request; split the resource's file".to_owned(),
            )),
            _ => Ok(Answer::Refused(outcome())),
        }
    }
}

/// How a transaction went.
enum Sent {
    /// Applied: each entry's new `Type/id`, in order.
    Applied(Vec<Option<String>>),
    /// Refused whole, naming the entry at fault when the server did.
    Refused { reason: String, at: Option<usize> },
}

enum Answer {
    /// Created: the `Location` of the new resource.
    Created(String),
    /// A Bundle or resource in answer.
    Body(Value),
    /// Refused, with the server's explanation.
    Refused(String),
}

fn is_ndjson(file: &Path) -> bool {
    file.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("ndjson"))
}

/// The tier of an NDJSON file's first resource (Bundles go after patients, before the rest:
/// they carry their own patients).
fn first_tier(file: &Path) -> anyhow::Result<u8> {
    if !is_ndjson(file) {
        return Ok(1);
    }
    let reader = std::io::BufReader::new(
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
    );
    for line in reader.lines().take(16) {
        let line = line.with_context(|| format!("reading {}", file.display()))?;
        if let Ok(value) = serde_json::from_str::<Value>(&line) {
            return Ok(tier(resource_type_of(&value)));
        }
    }
    Ok(4)
}

/// The server assigns ids and versions.
fn strip_server_fields(resource: &mut Value) {
    if let Some(object) = resource.as_object_mut() {
        object.remove("id");
        object.remove("meta");
    }
}

/// Replaces every `reference` that names an imported resource with its new name.
fn rewrite_references(
    value: &mut Value,
    created: &HashMap<String, String>,
    pending: &HashMap<String, String>,
) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "reference"
                    && let Value::String(text) = child
                {
                    if let Some(new) = created
                        .get(text.as_str())
                        .or_else(|| pending.get(text.as_str()))
                    {
                        *text = new.clone();
                    }
                } else {
                    rewrite_references(child, created, pending);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, created, pending);
            }
        }
        _ => {}
    }
}

/// `Type/id` from a `Location` such as `…/fhir/Observation/abc/_history/1`.
fn reference_of_location(location: &str) -> Option<String> {
    let path = location.split("/_history/").next()?;
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let kind = parts.next()?;
    (!id.is_empty() && kind.starts_with(|c: char| c.is_ascii_uppercase()))
        .then(|| format!("{kind}/{id}"))
}

/// The text of an OperationOutcome's first issue: its expression and diagnostics.
fn outcome_text(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let issue = value.pointer("/issue/0")?;
    let diagnostics = issue.get("diagnostics").and_then(Value::as_str)?;
    Some(
        match issue.pointer("/expression/0").and_then(Value::as_str) {
            Some(path) if !path.is_empty() => format!("{path}: {diagnostics}"),
            _ => diagnostics.to_owned(),
        },
    )
}

/// What the server said about entry `at` of a transaction, without the transaction's
/// framing (`Bundle.entry[3].`, `entry 3: `, `; nothing of the transaction was applied`).
fn entry_reason(reason: &str, at: usize) -> String {
    reason
        .replace(&format!("Bundle.entry[{at}]."), "")
        .replace(&format!("Bundle.entry[{at}]"), "")
        .replace(&format!("entry {at}: "), "")
        .replace("; nothing of the transaction was applied", "")
        .trim_start_matches([':', ' '])
        .to_owned()
}

/// The entry an outcome's expression names (`Bundle.entry[3].resource…`).
fn entry_index(reason: &str) -> Option<usize> {
    let rest = reason.split("Bundle.entry[").nth(1)?;
    rest.split(']').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_rewritten_wherever_they_are() {
        let mut created = HashMap::new();
        created.insert("Patient/src-1".to_owned(), "Patient/new-1".to_owned());
        let mut pending = HashMap::new();
        pending.insert("urn:uuid:enc".to_owned(), "urn:uuid:fresh".to_owned());
        let mut resource = json!({
            "subject": {"reference": "Patient/src-1", "display": "Patient/src-1"},
            "encounter": {"reference": "urn:uuid:enc"},
            "performer": [{"reference": "Practitioner/elsewhere"}],
        });
        rewrite_references(&mut resource, &created, &pending);
        assert_eq!(resource["subject"]["reference"], "Patient/new-1");
        assert_eq!(
            resource["subject"]["display"], "Patient/src-1",
            "only references"
        );
        assert_eq!(resource["encounter"]["reference"], "urn:uuid:fresh");
        assert_eq!(
            resource["performer"][0]["reference"], "Practitioner/elsewhere",
            "an unknown reference is left for the server to judge"
        );
    }

    #[test]
    fn locations_and_outcomes_are_read() {
        assert_eq!(
            reference_of_location("http://h/fhir/Observation/abc/_history/1").as_deref(),
            Some("Observation/abc")
        );
        assert_eq!(
            reference_of_location("Patient/p-1/_history/3").as_deref(),
            Some("Patient/p-1")
        );
        assert_eq!(reference_of_location("/fhir/"), None);
        let outcome = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","expression":["Bundle.entry[2].resource.status"],"diagnostics":"required"}]}"#;
        let text = outcome_text(outcome).unwrap();
        assert_eq!(text, "Bundle.entry[2].resource.status: required");
        assert_eq!(entry_index(&text), Some(2));
        assert_eq!(entry_index("required"), None);
    }

    #[test]
    fn what_is_referred_to_comes_first() {
        let mut types = vec![
            "Task",
            "DiagnosticReport",
            "Observation",
            "Encounter",
            "PractitionerRole",
            "Practitioner",
            "Patient",
        ];
        types.sort_by_key(|t| tier(t));
        assert_eq!(
            types,
            vec![
                "Patient",
                "Practitioner",
                "PractitionerRole",
                "Encounter",
                "Observation",
                "DiagnosticReport",
                "Task"
            ]
        );
    }
}
