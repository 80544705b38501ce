//! `transaction` and `batch` Bundles, and conditional create.
//!
//! A transaction is prepared entry by entry, each authorized, audited and sealed exactly as
//! if it had come alone, and then written as one store batch, so it is applied whole or not
//! at all: one entry refused, invalid or in conflict, and nothing of it is written. Entries
//! are handled in FHIR's order (DELETE, POST, PUT); a transaction only writes (reads go in
//! a batch, so that no answer can come after writes were committed). A POST's `urn:uuid:`
//! full URL is resolved to its new `Type/id`, or to the resource its condition matched, in
//! every other entry first.
//! A batch runs each entry on its own and answers each with its own status.

use std::collections::HashMap;

use haven_fhir::bundle::{BundleKind, BundleRequest, EntryRequest, Method};
use serde_json::Value;

use super::search::{SearchPage, SearchRequest};
use super::{PreparedWrite, ResourceView, served_type};
use crate::{App, AppError, AppResult, RequestContext};

/// The most reads and searches one batch runs (each search may open many resources).
pub const BATCH_READS_MAX: usize = 20;

/// What one entry came to.
#[derive(Debug)]
pub enum EntryOutcome {
    /// A resource created (`201`), updated or read (`200`), or deleted (`204`).
    Resource {
        status: u16,
        view: Box<ResourceView>,
    },
    /// A search's page.
    Search(SearchPage),
    /// A refused entry of a batch.
    Failed(AppError),
}

/// The answer to a Bundle, entry by entry in the order sent.
#[derive(Debug)]
pub struct BundleOutcome {
    pub kind: BundleKind,
    pub entries: Vec<EntryOutcome>,
}

/// `Type/id` (optionally `/_history/n`) or `Type?query` of an entry's URL.
#[derive(Debug)]
enum Target {
    Instance {
        resource_type: String,
        id: String,
    },
    Type {
        resource_type: String,
        query: Vec<(String, String)>,
    },
}

fn target(url: &str) -> AppResult<Target> {
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (parts.as_slice(), query) {
        ([resource_type], query) => Ok(Target::Type {
            resource_type: (*resource_type).to_owned(),
            query: query
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        }),
        ([resource_type, id], None) => Ok(Target::Instance {
            resource_type: (*resource_type).to_owned(),
            id: (*id).to_owned(),
        }),
        _ => Err(AppError::InvalidResource {
            path: "request.url".into(),
            message: "a relative URL: Type, Type/id or Type?search".into(),
        }),
    }
}

/// The version named by an `If-Match` value (`W/"3"`, `"3"` or `3`).
pub fn parse_if_match(value: &str) -> AppResult<i64> {
    let trimmed = value.trim().trim_start_matches("W/").trim_matches('"');
    trimmed
        .parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| AppError::InvalidResource {
            path: "If-Match".into(),
            message: "an ETag of this server, W/\"version\"".into(),
        })
}

fn in_entry(index: usize) -> impl FnOnce(AppError) -> AppError {
    move |error| match error {
        AppError::BundleEntry { .. } => error,
        other => AppError::BundleEntry {
            index,
            source: Box::new(other),
        },
    }
}

impl App {
    /// Creates `resource` unless the search `if_none_exist` finds it: one match is
    /// answered as it is (`200`), two or more refuse the create (`412`).
    pub async fn fhir_create_conditional(
        &self,
        context: &RequestContext,
        resource: haven_fhir::AnyResource,
        if_none_exist: Option<&str>,
    ) -> AppResult<(u16, ResourceView)> {
        if let Some(existing) = self
            .conditional_match(context, resource.resource_type(), if_none_exist)
            .await?
        {
            return Ok((200, existing));
        }
        Ok((201, self.fhir_create(context, resource).await?))
    }

    async fn conditional_match(
        &self,
        context: &RequestContext,
        resource_type: &str,
        if_none_exist: Option<&str>,
    ) -> AppResult<Option<ResourceView>> {
        let Some(query) = if_none_exist else {
            return Ok(None);
        };
        let query = query.trim_start_matches('?');
        let params = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .chain([("_count".to_owned(), "2".to_owned())])
            .collect();
        let page = self
            .fhir_search(context, resource_type, &SearchRequest { params })
            .await?;
        match page.matches.len() {
            0 => Ok(None),
            1 => Ok(page.matches.into_iter().next()),
            _ => Err(AppError::PreconditionFailed { current: 0 }),
        }
    }

    /// Runs a transaction or batch Bundle.
    pub async fn fhir_bundle(
        &self,
        context: &RequestContext,
        request: BundleRequest,
    ) -> AppResult<BundleOutcome> {
        match request.kind {
            BundleKind::Batch => {
                let reads = request
                    .entries
                    .iter()
                    .filter(|e| e.method == Method::Get)
                    .count();
                if reads > BATCH_READS_MAX {
                    return Err(AppError::TooCostly(format!(
                        "at most {BATCH_READS_MAX} reads and searches in one batch"
                    )));
                }
                let mut entries = Vec::with_capacity(request.entries.len());
                for entry in request.entries {
                    entries.push(match self.run_entry(context, entry).await {
                        Ok(outcome) => outcome,
                        Err(error) => EntryOutcome::Failed(error),
                    });
                }
                Ok(BundleOutcome {
                    kind: BundleKind::Batch,
                    entries,
                })
            }
            BundleKind::Transaction => self.run_transaction(context, request.entries).await,
        }
    }

    /// One entry on its own (a batch's).
    async fn run_entry(
        &self,
        context: &RequestContext,
        entry: EntryRequest,
    ) -> AppResult<EntryOutcome> {
        match (entry.method, target(&entry.url)?) {
            (Method::Get, Target::Instance { resource_type, id }) => Ok(EntryOutcome::Resource {
                status: 200,
                view: Box::new(self.fhir_read(context, &resource_type, &id).await?),
            }),
            (Method::Get, Target::Type { resource_type, query }) => Ok(EntryOutcome::Search(
                self.fhir_search(context, &resource_type, &SearchRequest { params: query })
                    .await?,
            )),
            (Method::Post, Target::Type { resource_type, .. }) => {
                let resource = entry_resource(entry.resource, &resource_type)?;
                let (status, view) = self
                    .fhir_create_conditional(context, resource, entry.if_none_exist.as_deref())
                    .await?;
                Ok(EntryOutcome::Resource {
                    status,
                    view: Box::new(view),
                })
            }
            (Method::Put, Target::Instance { resource_type, id }) => {
                let resource = entry_resource(entry.resource, &resource_type)?;
                let if_match = entry.if_match.as_deref().map(parse_if_match).transpose()?;
                Ok(EntryOutcome::Resource {
                    status: 200,
                    view: Box::new(self.fhir_update(context, &id, resource, if_match).await?),
                })
            }
            (Method::Delete, Target::Instance { resource_type, id }) => {
                self.fhir_delete(context, &resource_type, &id).await?;
                Ok(EntryOutcome::Resource {
                    status: 204,
                    view: Box::new(ResourceView {
                        resource_type: served_type(&resource_type)?,
                        id,
                        version: 0,
                        updated_at_ms: self.clock.now_ms(),
                        resource: None,
                    }),
                })
            }
            _ => Err(AppError::NotSupported(
                "this combination of method and URL; use POST Type, PUT Type/id, DELETE Type/id or GET".into(),
            )),
        }
    }

    async fn run_transaction(
        &self,
        context: &RequestContext,
        entries: Vec<EntryRequest>,
    ) -> AppResult<BundleOutcome> {
        // Conditional creates are matched first, so that references to an entry that matched
        // an existing resource lead to that resource; then every other POST gets its new id,
        // so references between entries can be resolved.
        let mut assigned: HashMap<String, String> = HashMap::new();
        let mut matched: Vec<Option<ResourceView>> = Vec::with_capacity(entries.len());
        let mut new_ids: Vec<Option<String>> = Vec::with_capacity(entries.len());
        for (index, entry) in entries.iter().enumerate() {
            let (found, id) = match (entry.method, target(&entry.url).map_err(in_entry(index))?) {
                (Method::Get, _) => {
                    return Err(in_entry(index)(AppError::NotSupported(
                        "a transaction only writes; send reads in a batch, or on their own".into(),
                    )));
                }
                (Method::Post, Target::Type { resource_type, .. }) => {
                    if resource_type == "Patient" {
                        return Err(in_entry(index)(AppError::NotSupported(
                            "a Patient is created on its own, before a transaction about them"
                                .into(),
                        )));
                    }
                    let found = self
                        .conditional_match(context, &resource_type, entry.if_none_exist.as_deref())
                        .await
                        .map_err(in_entry(index))?;
                    let (target, id) = match &found {
                        Some(existing) => (format!("{resource_type}/{}", existing.id), None),
                        None => {
                            let id = uuid::Uuid::now_v7().to_string();
                            (format!("{resource_type}/{id}"), Some(id))
                        }
                    };
                    if let Some(full_url) = entry.full_url.as_deref()
                        && full_url.starts_with("urn:uuid:")
                    {
                        assigned.insert(full_url.to_owned(), target);
                    }
                    (found, id)
                }
                _ => (None, None),
            };
            matched.push(found);
            new_ids.push(id);
        }
        // One resource at most once (FHIR §3.1.0.11.2): two entries changing it would leave
        // it to their order.
        let mut touched = std::collections::HashSet::new();
        for (index, entry) in entries.iter().enumerate() {
            if let Target::Instance { resource_type, id } =
                target(&entry.url).map_err(in_entry(index))?
                && !touched.insert((resource_type, id))
            {
                return Err(in_entry(index)(AppError::Conflict {
                    code: "duplicate_entry",
                    message: "a resource appears in a transaction only once".into(),
                }));
            }
        }
        let resolve = |reference: &str| assigned.get(reference).cloned();

        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by_key(|&i| entries[i].method.order());
        let mut outcomes: Vec<Option<EntryOutcome>> = (0..entries.len()).map(|_| None).collect();
        let mut prepared: Vec<(usize, PreparedWrite, u16)> = Vec::new();
        // Creates are prepared together once every entry has been read: one audit append
        // and one look-up per patient for all of them.
        let mut creates = Vec::new();
        let mut entries: Vec<Option<EntryRequest>> = entries.into_iter().map(Some).collect();
        for &index in &order {
            let Some(mut entry) = entries[index].take() else {
                continue;
            };
            if let Some(resource) = entry.resource.as_mut() {
                haven_fhir::bundle::resolve_references(resource, &resolve);
            }
            let step = async {
                match (entry.method, target(&entry.url)?) {
                    (Method::Post, Target::Type { resource_type, .. }) => {
                        if let Some(existing) = matched[index].take() {
                            outcomes[index] = Some(EntryOutcome::Resource {
                                status: 200,
                                view: Box::new(existing),
                            });
                            return Ok(None);
                        }
                        let resource = entry_resource(entry.resource, &resource_type)?;
                        creates.push((index, resource, new_ids[index].clone()));
                        Ok(None)
                    }
                    (Method::Put, Target::Instance { resource_type, id }) => {
                        let resource = entry_resource(entry.resource, &resource_type)?;
                        if resource.resource_type() == "Patient" {
                            return Err(AppError::NotSupported(
                                "a Patient is updated on its own, not in a transaction".into(),
                            ));
                        }
                        let if_match = entry.if_match.as_deref().map(parse_if_match).transpose()?;
                        Ok(Some((self.prepare_update(context, &id, resource, if_match).await?, 200)))
                    }
                    (Method::Delete, Target::Instance { resource_type, id }) => {
                        Ok(Some((self.prepare_delete(context, &resource_type, &id).await?, 204)))
                    }
                    _ => Err(AppError::NotSupported(
                        "this combination of method and URL; use POST Type, PUT Type/id, DELETE Type/id or GET".into(),
                    )),
                }
            };
            if let Some((write, status)) = step.await.map_err(in_entry(index))? {
                prepared.push((index, write, status));
            }
        }

        let (positions, batch): (Vec<usize>, Vec<_>) = creates
            .into_iter()
            .map(|(index, resource, id)| (index, (resource, id)))
            .unzip();
        let created = self
            .prepare_creates(context, batch)
            .await
            .map_err(|(at, error)| in_entry(positions.get(at).copied().unwrap_or(0))(error))?;
        prepared.extend(
            positions
                .into_iter()
                .zip(created)
                .map(|(index, write)| (index, write, 201)),
        );
        let mut writes = Vec::with_capacity(prepared.len());
        let mut write_entries = Vec::with_capacity(prepared.len());
        for (index, write, _) in &mut prepared {
            if let Some(w) = write.write.take() {
                writes.push(w);
                write_entries.push(*index);
            }
        }
        if !writes.is_empty() {
            self.apply_writes_at(writes)
                .await
                .map_err(|(position, error)| {
                    in_entry(write_entries.get(position).copied().unwrap_or(0))(error)
                })?;
        }
        for (index, write, status) in prepared {
            outcomes[index] = Some(EntryOutcome::Resource {
                status,
                view: Box::new(write.view),
            });
        }
        Ok(BundleOutcome {
            kind: BundleKind::Transaction,
            entries: outcomes
                .into_iter()
                .map(|o| o.unwrap_or(EntryOutcome::Failed(AppError::NotFound)))
                .collect(),
        })
    }
}

/// The entry's resource, parsed and checked to be of the URL's type.
fn entry_resource(
    resource: Option<Value>,
    resource_type: &str,
) -> AppResult<haven_fhir::AnyResource> {
    let resource = resource.ok_or_else(|| AppError::InvalidResource {
        path: "resource".into(),
        message: "required for POST and PUT".into(),
    })?;
    let resource = haven_fhir::from_value(resource)?;
    if resource.resource_type() != resource_type {
        return Err(AppError::InvalidResource {
            path: "resource.resourceType".into(),
            message: format!("must be the type in the URL ({resource_type})"),
        });
    }
    Ok(resource)
}
