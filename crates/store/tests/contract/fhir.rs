//! Contracts of the FHIR resource tables: versions, atomic batches, searches and history.

use std::sync::Arc;

use haven_domain::PatientId;
use haven_store::Store;
use haven_store::fhir::{
    HistoryQuery, Precondition, ResourceQuery, ResourceToken, ResourceWrite, WriteConflict,
};

use crate::{Engine, T0_MS, insert_patient_row, random_bytes};

fn token(param: &str, value: &str) -> ResourceToken {
    ResourceToken {
        param: param.to_owned(),
        token: value.as_bytes().to_vec(),
    }
}

fn write(id: &str, patient: PatientId, version: i64, tokens: Vec<ResourceToken>) -> ResourceWrite {
    ResourceWrite {
        resource_type: "Observation".to_owned(),
        id: id.to_owned(),
        precondition: if version == 1 {
            Precondition::Absent
        } else {
            Precondition::Version(version - 1)
        },
        version,
        subject: patient,
        patient: Some(patient),
        sealed: Some(random_bytes(64)),
        search: tokens,
        held: false,
        now_ms: T0_MS + version,
    }
}

async fn ids(store: &Arc<dyn Store>, query: ResourceQuery) -> Vec<String> {
    store
        .search_resources(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect()
}

fn query(patient: Option<PatientId>, filters: Vec<Vec<ResourceToken>>) -> ResourceQuery {
    ResourceQuery {
        resource_type: "Observation".to_owned(),
        patient,
        patients: None,
        ids: None,
        filters,
        after: None,
        limit: 100,
    }
}

pub(crate) async fn resources_keep_every_version_and_search_only_the_current(engine: &Engine) {
    let store = engine.store();
    let patient = insert_patient_row(&*store).await;
    let first = write("obs-1", patient, 1, vec![token("code", "hr")]);
    let sealed_v1 = first.sealed.clone();
    store.write_resources(vec![first]).await.unwrap().unwrap();

    let current = store
        .resource("Observation", "obs-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.version, 1);
    assert_eq!(current.sealed, sealed_v1);
    assert_eq!(current.patient, Some(patient));
    assert_eq!(current.subject_key.as_ref().unwrap().subject, patient);
    assert_eq!(
        ids(&store, query(None, vec![vec![token("code", "hr")]])).await,
        ["obs-1"]
    );

    // Version 2 replaces the tokens; version 1 is still readable by version.
    let second = write("obs-1", patient, 2, vec![token("code", "bp")]);
    let sealed_v2 = second.sealed.clone();
    store.write_resources(vec![second]).await.unwrap().unwrap();
    assert!(
        ids(&store, query(None, vec![vec![token("code", "hr")]]))
            .await
            .is_empty()
    );
    assert_eq!(
        ids(
            &store,
            query(Some(patient), vec![vec![token("code", "bp")]])
        )
        .await,
        ["obs-1"]
    );
    let old = store
        .resource_version("Observation", "obs-1", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.sealed, sealed_v1);
    let new = store
        .resource("Observation", "obs-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((new.version, new.sealed), (2, sealed_v2));

    // A deletion is a version without content, found by no search.
    let mut deletion = write("obs-1", patient, 3, Vec::new());
    deletion.sealed = None;
    store
        .write_resources(vec![deletion])
        .await
        .unwrap()
        .unwrap();
    let deleted = store
        .resource("Observation", "obs-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((deleted.version, deleted.sealed), (3, None));
    assert!(
        ids(&store, query(Some(patient), Vec::new()))
            .await
            .is_empty()
    );

    let history = store
        .resource_history(&HistoryQuery {
            resource_type: "Observation".to_owned(),
            id: Some("obs-1".to_owned()),
            patient: None,
            before: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|r| r.version).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    let older = store
        .resource_history(&HistoryQuery {
            resource_type: "Observation".to_owned(),
            id: None,
            patient: Some(patient),
            before: Some(history[0].seq),
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(older.iter().map(|r| r.version).collect::<Vec<_>>(), [2]);

    // A result held for review is released once.
    let mut held = write("held-1", patient, 1, Vec::new());
    held.held = true;
    store.write_resources(vec![held]).await.unwrap().unwrap();
    assert!(
        store
            .resource("Observation", "held-1")
            .await
            .unwrap()
            .unwrap()
            .held
    );
    assert!(
        store
            .release_resource("Observation", "held-1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .release_resource("Observation", "held-1")
            .await
            .unwrap()
    );
    assert!(
        !store
            .resource("Observation", "held-1")
            .await
            .unwrap()
            .unwrap()
            .held
    );

    // Versions are never rewritten, even by SQL around the store.
    assert!(
        engine
            .execute_raw("UPDATE fhir_resources SET sealed = NULL")
            .await
            .is_err()
    );
}

pub(crate) async fn a_resource_batch_applies_whole_or_not_at_all(engine: &Engine) {
    let store = engine.store();
    let patient = insert_patient_row(&*store).await;
    store
        .write_resources(vec![write("a", patient, 1, vec![token("code", "x")])])
        .await
        .unwrap()
        .unwrap();

    // The third write is stale: nothing of the batch may be applied.
    let stale = write("a", patient, 2, Vec::new());
    let mut stale = stale;
    stale.precondition = Precondition::Version(7);
    stale.version = 8;
    let conflict = store
        .write_resources(vec![
            write("b", patient, 1, vec![token("code", "x")]),
            write("c", patient, 1, vec![token("code", "x")]),
            stale,
        ])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        conflict,
        WriteConflict {
            index: 2,
            current: Some(1),
            deleted: false
        }
    );
    assert!(store.resource("Observation", "b").await.unwrap().is_none());
    assert_eq!(
        ids(&store, query(None, vec![vec![token("code", "x")]])).await,
        ["a"]
    );

    // Creating an id that exists, or writing one resource twice in a batch, conflicts.
    let again = store
        .write_resources(vec![
            write("e", patient, 1, Vec::new()),
            write("a", patient, 1, Vec::new()),
        ])
        .await
        .unwrap();
    assert!(again.is_err(), "a create of an id that exists conflicts");
    assert!(store.resource("Observation", "e").await.unwrap().is_none());
    let twice = store
        .write_resources(vec![
            write("d", patient, 1, Vec::new()),
            write("d", patient, 1, Vec::new()),
        ])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(twice.index, 1);
    assert!(store.resource("Observation", "d").await.unwrap().is_none());

    // An update of whatever is current must still name the next version.
    let mut blind = write("a", patient, 2, Vec::new());
    blind.precondition = Precondition::Exists;
    let seqs = store.write_resources(vec![blind]).await.unwrap().unwrap();
    assert_eq!(seqs.len(), 1);
    let mut missing = write("zz", patient, 2, Vec::new());
    missing.precondition = Precondition::Exists;
    assert_eq!(
        store
            .write_resources(vec![missing])
            .await
            .unwrap()
            .unwrap_err()
            .current,
        None
    );

    // A large batch spans several multi-row statements and comes back whole.
    let many: Vec<ResourceWrite> = (0..250)
        .map(|i| {
            write(
                &format!("m{i:03}"),
                patient,
                1,
                vec![
                    token("code", "many"),
                    token("date", &format!("d{i}")),
                    token("status", "final"),
                ],
            )
        })
        .collect();
    store.write_resources(many).await.unwrap().unwrap();
    let mut found = Vec::new();
    let mut page = query(Some(patient), vec![vec![token("code", "many")]]);
    loop {
        let ids = ids(&store, page.clone()).await;
        let Some(last) = ids.last().cloned() else {
            break;
        };
        found.extend(ids);
        page.after = Some(last);
    }
    assert_eq!(found.len(), 250);

    // Batches are bounded.
    let too_many = (0..=haven_store::limits::RESOURCE_WRITES_MAX)
        .map(|i| write(&format!("n{i}"), patient, 1, Vec::new()))
        .collect();
    assert!(store.write_resources(too_many).await.is_err());
}

pub(crate) async fn resource_searches_and_filters_and_or_and_page(engine: &Engine) {
    let store = engine.store();
    let alice = insert_patient_row(&*store).await;
    let bob = insert_patient_row(&*store).await;
    let mut writes = Vec::new();
    for i in 0..6 {
        let patient = if i % 2 == 0 { alice } else { bob };
        let code = if i < 3 { "hr" } else { "bp" };
        writes.push(write(
            &format!("r{i}"),
            patient,
            1,
            vec![token("code", code), token("date", &format!("m{}", i % 3))],
        ));
    }
    store.write_resources(writes).await.unwrap().unwrap();

    assert_eq!(
        ids(&store, query(Some(alice), Vec::new())).await,
        ["r0", "r2", "r4"]
    );
    assert_eq!(
        ids(
            &store,
            query(
                None,
                vec![
                    vec![token("code", "hr")],
                    vec![token("date", "m0"), token("date", "m2")]
                ]
            )
        )
        .await,
        ["r0", "r2"]
    );
    assert_eq!(
        ids(&store, query(Some(bob), vec![vec![token("code", "bp")]])).await,
        ["r3", "r5"]
    );
    let mut paged = query(None, Vec::new());
    paged.after = Some("r1".to_owned());
    paged.limit = 2;
    assert_eq!(ids(&store, paged).await, ["r2", "r3"]);
    let mut by_id = query(None, Vec::new());
    by_id.ids = Some(vec!["r5".to_owned(), "r0".to_owned(), "nope".to_owned()]);
    assert_eq!(ids(&store, by_id).await, ["r0", "r5"]);
    let mut some = query(None, Vec::new());
    some.patients = Some(vec![bob]);
    assert_eq!(ids(&store, some.clone()).await, ["r1", "r3", "r5"]);
    some.patients = Some(Vec::new());
    assert!(ids(&store, some).await.is_empty());
    let mut other_type = query(None, Vec::new());
    other_type.resource_type = "Condition".to_owned();
    assert!(ids(&store, other_type).await.is_empty());

    // Crypto-shredding a patient removes their resources' tokens with their key.
    assert!(store.shred_subject(alice, T0_MS).await.unwrap());
    assert_eq!(
        ids(&store, query(None, vec![vec![token("code", "hr")]])).await,
        ["r1"]
    );
    let shredded = store.resource("Observation", "r0").await.unwrap().unwrap();
    assert!(shredded.subject_key.is_none());
}

pub(crate) async fn attachments_become_visible_whole_with_their_chunks(engine: &Engine) {
    use haven_store::fhir::StoredAttachment;
    let store = engine.store();
    let patient = insert_patient_row(&*store).await;
    let id = uuid::Uuid::now_v7();
    let chunks: Vec<Vec<u8>> = (0..3).map(|_| random_bytes(1000)).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        store
            .put_attachment_chunk(id, u32::try_from(index).unwrap(), chunk.clone())
            .await
            .unwrap();
    }
    // Chunks alone are no attachment.
    assert!(store.attachment(id).await.unwrap().is_none());
    let attachment = StoredAttachment {
        id,
        patient,
        content_type: "application/pdf".to_owned(),
        size_bytes: 2_500,
        chunks: 3,
        created_by: "someone".to_owned(),
        created_at_ms: T0_MS,
        subject_key: None,
    };
    store.insert_attachment(attachment.clone()).await.unwrap();
    let found = store.attachment(id).await.unwrap().unwrap();
    assert_eq!(found.subject_key.as_ref().unwrap().subject, patient);
    assert_eq!(
        StoredAttachment {
            subject_key: None,
            ..found
        },
        attachment
    );
    for (index, chunk) in chunks.iter().enumerate() {
        let stored = store
            .attachment_chunk(id, u32::try_from(index).unwrap())
            .await
            .unwrap();
        assert_eq!(stored.as_ref(), Some(chunk));
    }
    assert!(store.attachment_chunk(id, 3).await.unwrap().is_none());
    // A chunk is written once.
    assert!(
        store
            .put_attachment_chunk(id, 0, random_bytes(10))
            .await
            .is_err()
    );
    assert!(
        store
            .attachment(uuid::Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
}
