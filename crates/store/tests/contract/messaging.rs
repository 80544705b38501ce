//! Contracts of end-to-end messaging: devices, conversations and their participants, sealed
//! messages with one content key per recipient device, read positions, attachments and
//! retention.
//!
//! The store cannot read a message, so what matters here is which sealed key it hands to
//! which device, and that a message it refuses leaves no trace: no row, no key, no moved
//! read position, no change to the conversation.

use std::collections::BTreeSet;

use haven_domain::{OrganisationId, PatientId, UserId};
use haven_store::messaging::{
    MessageKey, MessagesDeleted, NewMessage, Participant, SendOutcome, StoredDevice, StoredMessage,
    StoredMessageAttachment, StoredThread,
};
use haven_store::{Store, StoreError, limits};
use uuid::Uuid;

use crate::{Engine, T0_MS, insert_patient_row, new_user, organisation, random_bytes};

// ------------------------------------------------------------------------------------------
// Rows and prerequisites
// ------------------------------------------------------------------------------------------

async fn stored_organisation(store: &dyn Store) -> OrganisationId {
    let organisation = organisation();
    let id = organisation.id;
    store.insert_organisation(organisation).await.unwrap();
    id
}

/// A stored user: devices and participants refer to the users table.
async fn member(store: &dyn Store, organisation: OrganisationId) -> UserId {
    let user = new_user(organisation, "clinician", None);
    let id = user.user.id;
    store.insert_user(user).await.unwrap();
    id
}

fn lowercase_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn new_device(user: UserId, added_at_ms: i64) -> StoredDevice {
    StoredDevice {
        id: Uuid::now_v7(),
        user,
        label: "Work laptop".to_owned(),
        hpke_public_key: random_bytes(32),
        signing_public_key: random_bytes(32),
        self_signature: random_bytes(64),
        fingerprint: lowercase_hex(&random_bytes(32)),
        added_at_ms,
        removed_at_ms: None,
    }
}

async fn registered_device(store: &dyn Store, user: UserId, added_at_ms: i64) -> StoredDevice {
    let device = new_device(user, added_at_ms);
    assert!(store.insert_device(device.clone()).await.unwrap());
    device
}

/// Devices in id order: the contract does not fix the order of a listing.
fn by_id(mut devices: Vec<StoredDevice>) -> Vec<StoredDevice> {
    devices.sort_by_key(|device| device.id);
    devices
}

fn new_thread(
    organisation: OrganisationId,
    patient: Option<PatientId>,
    created_by: UserId,
    created_at_ms: i64,
) -> StoredThread {
    StoredThread {
        id: Uuid::now_v7(),
        organisation,
        patient,
        created_by,
        created_at_ms,
        last_message_seq: 0,
        last_message_at_ms: None,
    }
}

/// A participant as the store keeps a fresh one: nothing read, not removed.
fn participant(thread: Uuid, user: UserId, added_at_ms: i64) -> Participant {
    Participant {
        thread,
        user,
        added_by: format!("user:{user}"),
        added_at_ms,
        removed_at_ms: None,
        read_seq: 0,
        read_at_ms: None,
    }
}

/// A staff conversation between `users` (the first starts it), all added when it starts.
async fn started_thread(
    store: &dyn Store,
    organisation: OrganisationId,
    users: &[UserId],
    created_at_ms: i64,
) -> StoredThread {
    let thread = new_thread(organisation, None, users[0], created_at_ms);
    let participants = users
        .iter()
        .map(|&user| participant(thread.id, user, created_at_ms))
        .collect();
    store
        .insert_thread(thread.clone(), participants)
        .await
        .unwrap();
    thread
}

/// Participants in user order: the contract does not fix the order of a listing.
async fn participants(store: &dyn Store, thread: Uuid) -> Vec<Participant> {
    let mut participants = store.thread_participants(thread).await.unwrap();
    participants.sort_by_key(|participant| participant.user);
    participants
}

async fn participant_of(store: &dyn Store, thread: Uuid, user: UserId) -> Participant {
    participants(store, thread)
        .await
        .into_iter()
        .find(|participant| participant.user == user)
        .unwrap_or_else(|| panic!("{user} takes part in {thread}"))
}

/// A message from `sender`, its content key sealed (as random bytes) to each of `recipients`.
fn message(
    thread: &StoredThread,
    sender: &StoredDevice,
    sent_at_ms: i64,
    recipients: &[Uuid],
) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        thread: thread.id,
        sender_user: sender.user,
        sender_device: sender.id,
        sent_at_ms,
        ciphertext: random_bytes(120),
        signature: random_bytes(64),
        keys: recipients
            .iter()
            .map(|&device| MessageKey {
                device,
                enc: random_bytes(32),
                sealed_key: random_bytes(48),
            })
            .collect(),
    }
}

async fn sent(store: &dyn Store, message: NewMessage) -> i64 {
    match store.insert_message(message).await.unwrap() {
        SendOutcome::Sent { seq } => seq,
        other => panic!("the message was not stored: {other:?}"),
    }
}

/// What `device` must read back of `message`, stored at `seq`: the key sealed to it, and no
/// other device's.
fn as_read_by(message: &NewMessage, seq: i64, device: Uuid) -> StoredMessage {
    StoredMessage {
        seq,
        id: message.id,
        thread: message.thread,
        sender_user: message.sender_user,
        sender_device: message.sender_device,
        sent_at_ms: message.sent_at_ms,
        ciphertext: message.ciphertext.clone(),
        signature: message.signature.clone(),
        key: message
            .keys
            .iter()
            .find(|key| key.device == device)
            .cloned(),
    }
}

async fn all_messages(store: &dyn Store, thread: Uuid, device: Uuid) -> Vec<StoredMessage> {
    store
        .thread_messages(thread, device, 0, limits::MESSAGES_PAGE_MAX)
        .await
        .unwrap()
}

fn seqs(messages: &[StoredMessage]) -> Vec<i64> {
    messages.iter().map(|message| message.seq).collect()
}

/// `user`'s inbox as (conversation, unread) in the order the store lists it.
async fn inbox(store: &dyn Store, user: UserId) -> Vec<(Uuid, u64)> {
    store
        .user_threads(user)
        .await
        .unwrap()
        .into_iter()
        .map(|summary| (summary.thread.id, summary.unread))
        .collect()
}

/// How many sealed keys the store still holds for these messages, counted around the store
/// (an update that changes nothing reports the rows it matched).
async fn keys_held_for(engine: &Engine, seqs: &[i64]) -> u64 {
    let list = seqs
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    engine
        .execute_raw(&format!(
            "UPDATE message_keys SET enc = enc WHERE message_seq IN ({list})"
        ))
        .await
        .unwrap()
}

// ------------------------------------------------------------------------------------------
// Devices
// ------------------------------------------------------------------------------------------

pub(crate) async fn devices_are_listed_by_owner_and_removed_only_by_their_owner(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;
    let carol = member(&*store, org).await;
    let laptop = registered_device(&*store, alice, T0_MS).await;
    let phone = registered_device(&*store, alice, T0_MS + 1).await;
    let bobs = registered_device(&*store, bob, T0_MS + 2).await;

    assert_eq!(
        store.device(laptop.id).await.unwrap(),
        Some(laptop.clone()),
        "every field as registered"
    );
    assert_eq!(store.device(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(
        by_id(store.devices_of(&[alice, bob]).await.unwrap()),
        by_id(vec![laptop.clone(), phone.clone(), bobs.clone()]),
        "several owners at once"
    );
    assert_eq!(
        by_id(store.devices_of(&[alice]).await.unwrap()),
        by_id(vec![laptop.clone(), phone.clone()])
    );
    assert_eq!(store.devices_of(&[carol]).await.unwrap(), vec![]);
    assert_eq!(store.devices_of(&[]).await.unwrap(), vec![]);

    // Someone else's device: refused, and nothing changes.
    assert!(
        !store
            .remove_device(bob, laptop.id, T0_MS + 10)
            .await
            .unwrap()
    );
    assert_eq!(store.device(laptop.id).await.unwrap(), Some(laptop.clone()));
    assert_eq!(
        by_id(store.devices_of(&[alice]).await.unwrap()),
        by_id(vec![laptop.clone(), phone.clone()])
    );
    assert!(
        !store
            .remove_device(alice, Uuid::now_v7(), T0_MS + 10)
            .await
            .unwrap()
    );

    assert!(
        store
            .remove_device(alice, laptop.id, T0_MS + 20)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_device(alice, laptop.id, T0_MS + 30)
            .await
            .unwrap(),
        "removed once"
    );
    assert_eq!(
        store.device(laptop.id).await.unwrap(),
        Some(StoredDevice {
            removed_at_ms: Some(T0_MS + 20),
            ..laptop.clone()
        }),
        "a removed device is still found by id, with when it was removed"
    );
    assert_eq!(
        by_id(store.devices_of(&[alice, bob]).await.unwrap()),
        by_id(vec![phone, bobs]),
        "only active devices are listed"
    );
}

pub(crate) async fn devices_per_person_are_bounded_and_fingerprints_unique(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;

    let mut devices = Vec::new();
    for index in 0..limits::DEVICES_PER_USER_MAX {
        devices.push(registered_device(&*store, alice, T0_MS + i64::from(index)).await);
    }
    let one_more = new_device(alice, T0_MS + 100);
    assert!(
        !store.insert_device(one_more.clone()).await.unwrap(),
        "a person has at most {} devices",
        limits::DEVICES_PER_USER_MAX
    );
    assert_eq!(store.device(one_more.id).await.unwrap(), None);
    assert_eq!(
        by_id(store.devices_of(&[alice]).await.unwrap()),
        by_id(devices.clone())
    );

    // A removed device frees its place.
    assert!(
        store
            .remove_device(alice, devices[0].id, T0_MS + 200)
            .await
            .unwrap()
    );
    assert!(store.insert_device(one_more.clone()).await.unwrap());
    assert_eq!(
        store.device(one_more.id).await.unwrap(),
        Some(one_more.clone())
    );

    // A device identity is registered once, whoever presents it, even after it was removed.
    for (taken, why) in [
        (&devices[1], "an active device's fingerprint"),
        (&devices[0], "a removed device's fingerprint"),
    ] {
        let copy = StoredDevice {
            fingerprint: taken.fingerprint.clone(),
            ..new_device(bob, T0_MS + 300)
        };
        let error = store.insert_device(copy.clone()).await.unwrap_err();
        assert!(
            matches!(error, StoreError::AlreadyExists),
            "{why}: {error:?}"
        );
        assert_eq!(store.device(copy.id).await.unwrap(), None, "{why}");
    }
    let same_id = StoredDevice {
        id: devices[1].id,
        ..new_device(bob, T0_MS + 300)
    };
    let error = store.insert_device(same_id).await.unwrap_err();
    assert!(matches!(error, StoreError::AlreadyExists), "{error:?}");
    assert_eq!(
        store.device(devices[1].id).await.unwrap(),
        Some(devices[1].clone())
    );
    assert_eq!(store.devices_of(&[bob]).await.unwrap(), vec![]);

    // Look-ups are bounded.
    let mut owners: Vec<UserId> = (0..=limits::DEVICE_OWNERS_LOOKUP_MAX)
        .map(|_| UserId::generate())
        .collect();
    owners[0] = alice;
    match store.devices_of(&owners).await {
        Err(StoreError::LimitExceeded { max, .. }) => {
            assert_eq!(max, limits::DEVICE_OWNERS_LOOKUP_MAX);
        }
        other => panic!("{} owners at once: {other:?}", owners.len()),
    }
    owners.pop();
    assert_eq!(
        store.devices_of(&owners).await.unwrap().len(),
        limits::DEVICES_PER_USER_MAX as usize,
        "exactly the limit is allowed"
    );
}

// ------------------------------------------------------------------------------------------
// Conversations and participants
// ------------------------------------------------------------------------------------------

pub(crate) async fn threads_keep_their_participants_including_removed_ones(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let patient = insert_patient_row(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;
    let carol = member(&*store, org).await;

    let thread = new_thread(org, Some(patient), alice, T0_MS);
    let alices = participant(thread.id, alice, T0_MS);
    let bobs = participant(thread.id, bob, T0_MS);
    store
        .insert_thread(thread.clone(), vec![alices.clone(), bobs.clone()])
        .await
        .unwrap();
    assert_eq!(store.thread(thread.id).await.unwrap(), Some(thread.clone()));
    assert_eq!(store.thread(Uuid::now_v7()).await.unwrap(), None);
    let mut expected = vec![alices.clone(), bobs.clone()];
    expected.sort_by_key(|p| p.user);
    assert_eq!(participants(&*store, thread.id).await, expected);
    assert_eq!(
        store.thread_participants(Uuid::now_v7()).await.unwrap(),
        vec![]
    );

    // Already present: refused, and the first addition is kept as it was.
    assert!(
        !store
            .add_participant(Participant {
                added_by: format!("user:{carol}"),
                ..participant(thread.id, bob, T0_MS + 5)
            })
            .await
            .unwrap()
    );
    assert_eq!(participants(&*store, thread.id).await, expected);

    let carols = participant(thread.id, carol, T0_MS + 10);
    assert!(store.add_participant(carols.clone()).await.unwrap());
    expected.push(carols.clone());
    expected.sort_by_key(|p| p.user);
    assert_eq!(participants(&*store, thread.id).await, expected);

    assert!(
        store
            .remove_participant(thread.id, bob, T0_MS + 20)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_participant(thread.id, bob, T0_MS + 21)
            .await
            .unwrap(),
        "removed once"
    );
    assert!(
        !store
            .remove_participant(thread.id, UserId::generate(), T0_MS + 21)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_participant(Uuid::now_v7(), alice, T0_MS + 21)
            .await
            .unwrap()
    );
    assert_eq!(
        participant_of(&*store, thread.id, bob).await,
        Participant {
            removed_at_ms: Some(T0_MS + 20),
            ..bobs.clone()
        },
        "a removed participant stays listed, with when"
    );
    assert_eq!(participants(&*store, thread.id).await.len(), 3);
    assert_eq!(
        participant_of(&*store, thread.id, alice).await,
        alices,
        "only the removed one changed"
    );

    // Brought back by someone else, later.
    let back = Participant {
        added_by: format!("user:{carol}"),
        ..participant(thread.id, bob, T0_MS + 30)
    };
    assert!(store.add_participant(back.clone()).await.unwrap());
    assert_eq!(participant_of(&*store, thread.id, bob).await, back);

    // A conversation within the staff has no patient.
    let staff = new_thread(org, None, alice, T0_MS + 40);
    store
        .insert_thread(
            staff.clone(),
            vec![participant(staff.id, alice, T0_MS + 40)],
        )
        .await
        .unwrap();
    assert_eq!(store.thread(staff.id).await.unwrap(), Some(staff));
}

pub(crate) async fn conversations_have_at_most_thread_participants_max(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let max = limits::THREAD_PARTICIPANTS_MAX as usize;
    let mut users = Vec::with_capacity(max + 1);
    for _ in 0..=max {
        users.push(member(&*store, org).await);
    }

    let too_many = new_thread(org, None, users[0], T0_MS);
    let error = store
        .insert_thread(
            too_many.clone(),
            users
                .iter()
                .map(|&user| participant(too_many.id, user, T0_MS))
                .collect(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::LimitExceeded { max: limit, .. } if limit == max),
        "{error:?}"
    );
    assert_eq!(
        store.thread(too_many.id).await.unwrap(),
        None,
        "nothing of it is stored"
    );
    assert_eq!(
        store.thread_participants(too_many.id).await.unwrap(),
        vec![]
    );

    let full = started_thread(&*store, org, &users[..max], T0_MS).await;
    assert_eq!(participants(&*store, full.id).await.len(), max);
    let latecomer = users[max];
    assert!(
        !store
            .add_participant(participant(full.id, latecomer, T0_MS + 1))
            .await
            .unwrap()
    );
    // Removed participants still count: removing someone frees no place.
    assert!(
        store
            .remove_participant(full.id, users[1], T0_MS + 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_participant(participant(full.id, latecomer, T0_MS + 3))
            .await
            .unwrap()
    );
    let listed = participants(&*store, full.id).await;
    assert_eq!(listed.len(), max);
    assert!(listed.iter().all(|p| p.user != latecomer));
}

// ------------------------------------------------------------------------------------------
// Messages
// ------------------------------------------------------------------------------------------

pub(crate) async fn each_device_reads_only_the_key_sealed_to_it(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;
    let carol = member(&*store, org).await;
    let a1 = registered_device(&*store, alice, T0_MS).await;
    let a2 = registered_device(&*store, alice, T0_MS).await;
    let b1 = registered_device(&*store, bob, T0_MS).await;
    let c1 = registered_device(&*store, carol, T0_MS).await;
    let thread = started_thread(&*store, org, &[alice, bob], T0_MS).await;
    let elsewhere = started_thread(&*store, org, &[alice, carol], T0_MS).await;

    let first = message(&thread, &a1, T0_MS + 1, &[a1.id, a2.id, b1.id]);
    // Sealed before Alice's second device was known to Bob's: it has no key for it.
    let second = message(&thread, &b1, T0_MS + 2, &[a1.id, b1.id]);
    let other = message(&elsewhere, &c1, T0_MS + 3, &[a1.id, c1.id]);
    let third = message(&thread, &a2, T0_MS + 4, &[a1.id, a2.id, b1.id]);
    let s1 = sent(&*store, first.clone()).await;
    let s2 = sent(&*store, second.clone()).await;
    let s_other = sent(&*store, other.clone()).await;
    let s3 = sent(&*store, third.clone()).await;
    assert!(
        s1 < s2 && s2 < s_other && s_other < s3,
        "seqs increase: {s1} {s2} {s_other} {s3}"
    );

    for device in [a1.id, a2.id, b1.id, c1.id, Uuid::now_v7()] {
        assert_eq!(
            all_messages(&*store, thread.id, device).await,
            vec![
                as_read_by(&first, s1, device),
                as_read_by(&second, s2, device),
                as_read_by(&third, s3, device),
            ],
            "as device {device} reads the conversation"
        );
    }
    let as_a2 = all_messages(&*store, thread.id, a2.id).await;
    assert_eq!(
        as_a2.iter().map(|m| m.key.is_some()).collect::<Vec<_>>(),
        [true, false, true],
        "a key for each message sealed to a2, none for the one that was not"
    );
    assert!(
        as_a2
            .iter()
            .filter_map(|m| m.key.as_ref())
            .all(|key| key.device == a2.id)
    );
    assert!(
        all_messages(&*store, thread.id, c1.id)
            .await
            .iter()
            .all(|m| m.key.is_none()),
        "no key for a device that was never a recipient"
    );
    assert_eq!(
        all_messages(&*store, elsewhere.id, c1.id).await,
        vec![as_read_by(&other, s_other, c1.id)],
        "each conversation holds only its own messages"
    );

    // Paging by seq.
    let (thread_id, reader) = (thread.id, b1.id);
    let page = |after_seq: i64, limit: u32| {
        let store = store.clone();
        async move {
            seqs(
                &store
                    .thread_messages(thread_id, reader, after_seq, limit)
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(page(0, 2).await, [s1, s2]);
    assert_eq!(page(s2, 2).await, [s3]);
    assert_eq!(page(s1, 1).await, [s2]);
    assert_eq!(page(s3, 2).await, Vec::<i64>::new());

    assert_eq!(
        store.thread(thread.id).await.unwrap(),
        Some(StoredThread {
            last_message_seq: s3,
            last_message_at_ms: Some(third.sent_at_ms),
            ..thread.clone()
        })
    );
    assert_eq!(
        store
            .thread(elsewhere.id)
            .await
            .unwrap()
            .unwrap()
            .last_message_seq,
        s_other
    );
}

pub(crate) async fn a_message_refused_leaves_no_trace(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;
    let carol = member(&*store, org).await;
    let dave = member(&*store, org).await;
    let a1 = registered_device(&*store, alice, T0_MS).await;
    let b1 = registered_device(&*store, bob, T0_MS).await;
    let b2 = registered_device(&*store, bob, T0_MS).await;
    let c1 = registered_device(&*store, carol, T0_MS).await;
    let d1 = registered_device(&*store, dave, T0_MS).await;
    let thread = started_thread(&*store, org, &[alice, bob, dave], T0_MS).await;
    // Carol takes part in another of Alice's conversations, not in this one.
    let carols = started_thread(&*store, org, &[carol, alice], T0_MS).await;
    assert!(
        store
            .remove_participant(thread.id, dave, T0_MS + 1)
            .await
            .unwrap()
    );
    assert!(store.remove_device(bob, b2.id, T0_MS + 2).await.unwrap());

    let first = message(&thread, &a1, T0_MS + 10, &[a1.id, b1.id]);
    let s1 = sent(&*store, first.clone()).await;
    let thread_before = store.thread(thread.id).await.unwrap().unwrap();
    let participants_before = participants(&*store, thread.id).await;
    let inbox_before = inbox(&*store, bob).await;
    assert_eq!(inbox_before, [(thread.id, 1)]);
    let (thread_id, reader) = (thread.id, a1.id);
    let unchanged = |why: String| {
        let store = store.clone();
        let (first, thread_before, participants_before, inbox_before) = (
            first.clone(),
            thread_before.clone(),
            participants_before.clone(),
            inbox_before.clone(),
        );
        async move {
            assert_eq!(
                all_messages(&*store, thread_id, reader).await,
                vec![as_read_by(&first, s1, reader)],
                "{why}: no message row"
            );
            assert_eq!(
                store.thread(thread_id).await.unwrap(),
                Some(thread_before),
                "{why}: the conversation did not move"
            );
            assert_eq!(
                participants(&*store, thread_id).await,
                participants_before,
                "{why}: no read position moved"
            );
            assert_eq!(
                inbox(&*store, bob).await,
                inbox_before,
                "{why}: nothing unread"
            );
        }
    };

    let mut refused = Vec::new();
    for (outsider, why) in [
        (c1.id, "a device of someone not in the conversation"),
        (d1.id, "a device of a removed participant"),
        (b2.id, "a removed device"),
        (Uuid::now_v7(), "a device never registered"),
    ] {
        // Where the device stands among the keys must not matter.
        for keys in [vec![outsider, a1.id, b1.id], vec![a1.id, b1.id, outsider]] {
            let message = message(&thread, &a1, T0_MS + 20, &keys);
            assert_eq!(
                store.insert_message(message.clone()).await.unwrap(),
                SendOutcome::NotARecipient(outsider),
                "{why}"
            );
            unchanged(why.to_owned()).await;
            refused.push(message);
        }
    }

    // A message id is used once, in any conversation.
    let duplicate = NewMessage {
        id: first.id,
        ..message(&thread, &b1, T0_MS + 30, &[a1.id, b1.id])
    };
    assert_eq!(
        store.insert_message(duplicate).await.unwrap(),
        SendOutcome::DuplicateId
    );
    unchanged("a duplicate id".to_owned()).await;
    let duplicate_elsewhere = NewMessage {
        id: first.id,
        ..message(&carols, &c1, T0_MS + 30, &[a1.id, c1.id])
    };
    assert_eq!(
        store.insert_message(duplicate_elsewhere).await.unwrap(),
        SendOutcome::DuplicateId
    );
    assert_eq!(all_messages(&*store, carols.id, c1.id).await, vec![]);
    assert_eq!(
        store
            .thread(carols.id)
            .await
            .unwrap()
            .unwrap()
            .last_message_seq,
        0
    );

    // More keys than a message may carry: refused before anything is written.
    let recipients: Vec<Uuid> = std::iter::once(b1.id)
        .chain((0..limits::MESSAGE_KEYS_MAX).map(|_| Uuid::now_v7()))
        .collect();
    match store
        .insert_message(message(&thread, &a1, T0_MS + 40, &recipients))
        .await
    {
        Err(StoreError::LimitExceeded { max, .. }) => assert_eq!(max, limits::MESSAGE_KEYS_MAX),
        other => panic!("{} keys: {other:?}", recipients.len()),
    }
    unchanged("too many keys".to_owned()).await;

    // Nothing of a refused message was kept, not even its id.
    let retried = NewMessage {
        keys: message(&thread, &a1, T0_MS + 20, &[a1.id, b1.id]).keys,
        ..refused[0].clone()
    };
    let s2 = sent(&*store, retried.clone()).await;
    assert!(s2 > s1);
    assert_eq!(
        all_messages(&*store, thread.id, b1.id).await,
        vec![
            as_read_by(&first, s1, b1.id),
            as_read_by(&retried, s2, b1.id)
        ]
    );
    assert_eq!(inbox(&*store, bob).await, [(thread.id, 2)]);
}

// ------------------------------------------------------------------------------------------
// Inboxes and read receipts
// ------------------------------------------------------------------------------------------

pub(crate) async fn unread_counts_follow_messages_from_others_and_read_positions(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;
    let carol = member(&*store, org).await;
    let dave = member(&*store, org).await;
    let a1 = registered_device(&*store, alice, T0_MS).await;
    let b1 = registered_device(&*store, bob, T0_MS).await;
    let c1 = registered_device(&*store, carol, T0_MS).await;
    let older = started_thread(&*store, org, &[alice, bob, carol], T0_MS).await;
    let newer = started_thread(&*store, org, &[alice, bob], T0_MS + 10).await;
    let without_alice = started_thread(&*store, org, &[bob, carol], T0_MS + 20).await;

    assert_eq!(
        inbox(&*store, alice).await,
        [(newer.id, 0), (older.id, 0)],
        "only her conversations, newest first, nothing unread"
    );
    assert_eq!(inbox(&*store, dave).await, []);
    assert_eq!(
        store.user_threads(alice).await.unwrap()[1].thread,
        store.thread(older.id).await.unwrap().unwrap(),
        "the whole conversation row"
    );

    let everyone = [a1.id, b1.id, c1.id];
    let s1 = sent(&*store, message(&older, &a1, T0_MS + 100, &everyone)).await;
    assert_eq!(
        inbox(&*store, alice).await,
        [(older.id, 0), (newer.id, 0)],
        "a message brings its conversation to the top; one's own message is not unread"
    );
    assert_eq!(
        inbox(&*store, bob).await,
        [(older.id, 1), (without_alice.id, 0), (newer.id, 0)]
    );

    let s2 = sent(&*store, message(&older, &b1, T0_MS + 200, &everyone)).await;
    assert_eq!(inbox(&*store, alice).await[0], (older.id, 1));
    assert_eq!(
        inbox(&*store, bob).await[0],
        (older.id, 0),
        "sending reads everything before one's own message"
    );
    assert_eq!(inbox(&*store, carol).await[0], (older.id, 2));
    let alices = participant_of(&*store, older.id, alice).await;
    assert_eq!(
        (alices.read_seq, alices.read_at_ms),
        (s1, Some(T0_MS + 100))
    );
    let bobs = participant_of(&*store, older.id, bob).await;
    assert_eq!((bobs.read_seq, bobs.read_at_ms), (s2, Some(T0_MS + 200)));
    let carols = participant_of(&*store, older.id, carol).await;
    assert_eq!((carols.read_seq, carols.read_at_ms), (0, None));

    // Carol reads, forward only and never past the newest message.
    assert!(
        store
            .mark_read(older.id, carol, s1, T0_MS + 300)
            .await
            .unwrap()
    );
    assert_eq!(inbox(&*store, carol).await[0], (older.id, 1));
    let carols = participant_of(&*store, older.id, carol).await;
    assert_eq!(
        (carols.read_seq, carols.read_at_ms),
        (s1, Some(T0_MS + 300))
    );
    for (seq, why) in [
        (s1, "the same position again"),
        (s1 - 1, "an older position"),
        (s2 + 1, "past the newest message"),
    ] {
        assert!(
            !store
                .mark_read(older.id, carol, seq, T0_MS + 301)
                .await
                .unwrap(),
            "{why}"
        );
        assert_eq!(
            participant_of(&*store, older.id, carol).await,
            carols,
            "{why}: nothing moved"
        );
    }
    assert!(
        !store
            .mark_read(older.id, dave, s2, T0_MS + 302)
            .await
            .unwrap(),
        "not a participant"
    );
    assert!(
        store
            .mark_read(older.id, carol, s2, T0_MS + 310)
            .await
            .unwrap()
    );
    assert_eq!(inbox(&*store, carol).await[0], (older.id, 0));

    // A removed participant no longer sees the conversation, nor reads in it.
    let s3 = sent(&*store, message(&older, &a1, T0_MS + 400, &everyone)).await;
    assert_eq!(inbox(&*store, carol).await[0], (older.id, 1));
    assert!(
        store
            .remove_participant(older.id, carol, T0_MS + 410)
            .await
            .unwrap()
    );
    assert_eq!(inbox(&*store, carol).await, [(without_alice.id, 0)]);
    assert!(
        !store
            .mark_read(older.id, carol, s3, T0_MS + 420)
            .await
            .unwrap(),
        "not for a removed participant"
    );
    assert_eq!(participant_of(&*store, older.id, carol).await.read_seq, s2);

    // Alice's own message read Bob's before it; Bob's message elsewhere is unread, and on top.
    sent(&*store, message(&newer, &b1, T0_MS + 500, &[a1.id, b1.id])).await;
    assert_eq!(inbox(&*store, alice).await, [(newer.id, 1), (older.id, 0)]);
    assert_eq!(
        inbox(&*store, bob).await,
        [(newer.id, 0), (older.id, 1), (without_alice.id, 0)]
    );
}

// ------------------------------------------------------------------------------------------
// Attachments and retention
// ------------------------------------------------------------------------------------------

fn new_attachment(
    thread: &StoredThread,
    uploaded_by: UserId,
    created_at_ms: i64,
) -> StoredMessageAttachment {
    StoredMessageAttachment {
        id: Uuid::now_v7(),
        thread: thread.id,
        uploaded_by,
        size_bytes: 2_500,
        chunks: 3,
        created_at_ms,
    }
}

async fn put_chunks(store: &dyn Store, attachment: Uuid, count: u32) -> Vec<Vec<u8>> {
    let mut chunks = Vec::new();
    for index in 0..count {
        let chunk = random_bytes(1000);
        store
            .put_attachment_chunk(attachment, index, chunk.clone())
            .await
            .unwrap();
        chunks.push(chunk);
    }
    chunks
}

pub(crate) async fn message_attachments_keep_their_chunks_while_their_row_exists(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let thread = started_thread(&*store, org, &[alice], T0_MS).await;

    let attachment = new_attachment(&thread, alice, T0_MS + 5);
    let chunks = put_chunks(&*store, attachment.id, attachment.chunks).await;
    assert_eq!(
        store.message_attachment(attachment.id).await.unwrap(),
        None,
        "chunks alone are no attachment"
    );
    store
        .insert_message_attachment(attachment.clone())
        .await
        .unwrap();
    assert_eq!(
        store.message_attachment(attachment.id).await.unwrap(),
        Some(attachment.clone())
    );
    assert_eq!(
        store.message_attachment(Uuid::now_v7()).await.unwrap(),
        None
    );
    assert!(
        store
            .insert_message_attachment(attachment.clone())
            .await
            .is_err(),
        "recorded once"
    );

    assert_eq!(
        store.delete_orphan_chunks(attachment.id).await.unwrap(),
        0,
        "the chunks of a recorded message attachment are not an orphan upload's"
    );
    for (index, chunk) in (0..).zip(&chunks) {
        assert_eq!(
            store.attachment_chunk(attachment.id, index).await.unwrap(),
            Some(chunk.clone())
        );
    }

    // An upload that never finished.
    let abandoned = Uuid::now_v7();
    put_chunks(&*store, abandoned, 2).await;
    assert_eq!(store.delete_orphan_chunks(abandoned).await.unwrap(), 2);
    for index in 0..2 {
        assert_eq!(
            store.attachment_chunk(abandoned, index).await.unwrap(),
            None
        );
    }
}

pub(crate) async fn retention_deletes_an_organisations_older_messages_in_bounded_batches(
    engine: &Engine,
) {
    let store = engine.store();
    let north = stored_organisation(&*store).await;
    let south = stored_organisation(&*store).await;
    let alice = member(&*store, north).await;
    let bob = member(&*store, north).await;
    let carol = member(&*store, south).await;
    let a1 = registered_device(&*store, alice, T0_MS).await;
    let b1 = registered_device(&*store, bob, T0_MS).await;
    let c1 = registered_device(&*store, carol, T0_MS).await;
    let ours = started_thread(&*store, north, &[alice, bob], T0_MS).await;
    let theirs = started_thread(&*store, south, &[carol], T0_MS).await;
    let cutoff = T0_MS + 1_000;

    let mut old_seqs = Vec::new();
    for offset in 1..=3 {
        old_seqs.push(
            sent(
                &*store,
                message(&ours, &a1, T0_MS + offset, &[a1.id, b1.id]),
            )
            .await,
        );
    }
    let at_cutoff = message(&ours, &b1, cutoff, &[a1.id, b1.id]);
    let s_at_cutoff = sent(&*store, at_cutoff.clone()).await;
    let later = message(&ours, &a1, cutoff + 1, &[a1.id, b1.id]);
    let s_later = sent(&*store, later.clone()).await;
    let south_old = message(&theirs, &c1, T0_MS + 1, &[c1.id]);
    let s_south_old = sent(&*store, south_old.clone()).await;

    let mut old_attachments = BTreeSet::new();
    for offset in 1..=3 {
        let attachment = new_attachment(&ours, alice, T0_MS + offset);
        put_chunks(&*store, attachment.id, 1).await;
        store
            .insert_message_attachment(attachment.clone())
            .await
            .unwrap();
        old_attachments.insert(attachment.id);
    }
    let kept = new_attachment(&ours, bob, cutoff);
    let south_attachment = new_attachment(&theirs, carol, T0_MS + 1);
    for attachment in [&kept, &south_attachment] {
        put_chunks(&*store, attachment.id, 1).await;
        store
            .insert_message_attachment(attachment.clone())
            .await
            .unwrap();
    }
    assert_eq!(keys_held_for(engine, &old_seqs).await, 6);

    let first = store
        .delete_messages_before(north, cutoff, 2)
        .await
        .unwrap();
    assert_eq!(first.messages, 2, "at most `limit` messages");
    assert_eq!(first.attachments.len(), 2, "at most `limit` attachments");
    let second = store
        .delete_messages_before(north, cutoff, 2)
        .await
        .unwrap();
    assert_eq!(second.messages, 1);
    assert_eq!(second.attachments.len(), 1);
    assert_eq!(
        first
            .attachments
            .iter()
            .chain(&second.attachments)
            .copied()
            .collect::<BTreeSet<_>>(),
        old_attachments,
        "each older attachment once"
    );
    assert_eq!(
        store
            .delete_messages_before(north, cutoff, 2)
            .await
            .unwrap(),
        MessagesDeleted::default(),
        "nothing older is left"
    );

    assert_eq!(
        all_messages(&*store, ours.id, b1.id).await,
        vec![
            as_read_by(&at_cutoff, s_at_cutoff, b1.id),
            as_read_by(&later, s_later, b1.id),
        ],
        "a message sent at the cutoff or after stays"
    );
    assert_eq!(
        all_messages(&*store, theirs.id, c1.id).await,
        vec![as_read_by(&south_old, s_south_old, c1.id)],
        "another organisation's messages stay"
    );
    assert_eq!(
        keys_held_for(engine, &old_seqs).await,
        0,
        "the sealed keys go with their messages"
    );
    assert_eq!(keys_held_for(engine, &[s_at_cutoff, s_later]).await, 4);

    for &id in &old_attachments {
        assert_eq!(store.message_attachment(id).await.unwrap(), None);
        // Their chunks are the blob store's to delete, which it now may.
        assert_eq!(store.delete_orphan_chunks(id).await.unwrap(), 1);
    }
    for attachment in [&kept, &south_attachment] {
        assert_eq!(
            store.message_attachment(attachment.id).await.unwrap(),
            Some(attachment.clone())
        );
        assert_eq!(store.delete_orphan_chunks(attachment.id).await.unwrap(), 0);
    }
}

// ------------------------------------------------------------------------------------------
// Concurrency
// ------------------------------------------------------------------------------------------

/// Messages sent at once, from two people's devices, while a third device syncs.
const CONCURRENT_SENDS: usize = 60;

pub(crate) async fn concurrent_sends_all_reach_a_device_that_syncs_by_seq(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;
    let a1 = registered_device(&*store, alice, T0_MS).await;
    let b1 = registered_device(&*store, bob, T0_MS).await;
    let b2 = registered_device(&*store, bob, T0_MS).await;
    let thread = started_thread(&*store, org, &[alice, bob], T0_MS).await;

    let messages: Vec<NewMessage> = (0..CONCURRENT_SENDS)
        .map(|index| {
            let sender = if index % 2 == 0 { &a1 } else { &b1 };
            let sent_at_ms = T0_MS + 1 + i64::try_from(index).unwrap();
            message(&thread, sender, sent_at_ms, &[a1.id, b1.id, b2.id])
        })
        .collect();
    let sends: Vec<_> = messages
        .iter()
        .cloned()
        .map(|message| {
            let store = store.clone();
            tokio::spawn(async move { sent(&*store, message).await })
        })
        .collect();

    // Bob's second device follows the conversation by its cursor, as a client does: a message
    // that becomes visible behind the cursor would never reach it.
    let mut received: Vec<StoredMessage> = Vec::new();
    let mut cursor = 0;
    loop {
        let sending = sends.iter().any(|send| !send.is_finished());
        let page = store
            .thread_messages(thread.id, b2.id, cursor, limits::MESSAGES_PAGE_MAX)
            .await
            .unwrap();
        if let Some(last) = page.last() {
            cursor = last.seq;
        }
        received.extend(page);
        if !sending && received.len() >= CONCURRENT_SENDS {
            break;
        }
        if !sending {
            // Every send has returned: one more read sees all that will ever be there.
            received.extend(
                store
                    .thread_messages(thread.id, b2.id, cursor, limits::MESSAGES_PAGE_MAX)
                    .await
                    .unwrap(),
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let mut seqs_by_id = std::collections::BTreeMap::new();
    for (message, send) in messages.iter().zip(sends) {
        seqs_by_id.insert(message.id, send.await.unwrap());
    }

    let mut expected: Vec<StoredMessage> = messages
        .iter()
        .map(|message| as_read_by(message, seqs_by_id[&message.id], b2.id))
        .collect();
    expected.sort_by_key(|message| message.seq);
    let missed: Vec<i64> = expected
        .iter()
        .filter(|message| !received.contains(message))
        .map(|message| message.seq)
        .collect();
    assert_eq!(
        missed,
        Vec::<i64>::new(),
        "messages the syncing device never received"
    );
    assert_eq!(received, expected, "each message once, in seq order");

    // The newest message by seq is the conversation's last, and each sender has read up to
    // their own newest message.
    let newest = expected.last().unwrap();
    let stored = store.thread(thread.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.last_message_seq, stored.last_message_at_ms),
        (newest.seq, Some(newest.sent_at_ms))
    );
    for sender in [alice, bob] {
        let own_newest = expected
            .iter()
            .filter(|message| message.sender_user == sender)
            .map(|message| message.seq)
            .max()
            .unwrap();
        assert_eq!(
            participant_of(&*store, thread.id, sender).await.read_seq,
            own_newest,
            "{sender}'s read position"
        );
    }
}

pub(crate) async fn a_conversations_devices_are_read_with_it(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;
    let carol = member(&*store, org).await;
    let a1 = registered_device(&*store, alice, T0_MS).await;
    let a2 = registered_device(&*store, alice, T0_MS + 1).await;
    let b1 = registered_device(&*store, bob, T0_MS).await;
    let b2 = registered_device(&*store, bob, T0_MS + 1).await;
    let c1 = registered_device(&*store, carol, T0_MS).await;
    let thread = started_thread(&*store, org, &[alice, bob, carol], T0_MS).await;
    // Someone who left keeps their place in the list; their devices are no recipients, nor
    // is a device removed by a current participant.
    assert!(
        store
            .remove_participant(thread.id, carol, T0_MS + 2)
            .await
            .unwrap()
    );
    assert!(store.remove_device(bob, b2.id, T0_MS + 3).await.unwrap());
    let sent_seq = sent(
        &*store,
        message(&thread, &a1, T0_MS + 4, &[a1.id, a2.id, b1.id]),
    )
    .await;

    let read = store
        .conversation_devices(thread.id)
        .await
        .unwrap()
        .expect("the conversation exists");
    assert_eq!(
        read.thread,
        store.thread(thread.id).await.unwrap().unwrap(),
        "the conversation as `thread` reads it"
    );
    assert_eq!(read.thread.last_message_seq, sent_seq);
    let mut listed = read.participants.clone();
    listed.sort_by_key(|p| p.user);
    assert_eq!(listed, participants(&*store, thread.id).await);
    assert_eq!(
        by_id(read.devices),
        by_id(store.devices_of(&[alice, bob]).await.unwrap()),
        "the active devices of the current participants, as `devices_of` lists them"
    );
    assert!(!by_id(store.devices_of(&[alice, bob]).await.unwrap()).contains(&c1));
    assert_eq!(
        store.conversation_devices(Uuid::now_v7()).await.unwrap(),
        None
    );
}

/// Sends that arrive together are stored together on some engines: each must still get the
/// answer it would get alone, and a refused one must not take the others down.
pub(crate) async fn concurrent_sends_are_answered_one_by_one(engine: &Engine) {
    let store = engine.store();
    let org = stored_organisation(&*store).await;
    let alice = member(&*store, org).await;
    let bob = member(&*store, org).await;
    let carol = member(&*store, org).await;
    let a1 = registered_device(&*store, alice, T0_MS).await;
    let b1 = registered_device(&*store, bob, T0_MS).await;
    let c1 = registered_device(&*store, carol, T0_MS).await;
    let threads = [
        started_thread(&*store, org, &[alice, bob], T0_MS).await,
        started_thread(&*store, org, &[alice, bob], T0_MS).await,
    ];
    let stored_before = NewMessage {
        ..message(&threads[0], &a1, T0_MS + 1, &[a1.id, b1.id])
    };
    sent(&*store, stored_before.clone()).await;

    // (message, what it must get): good ones in both conversations, an outsider's device,
    // an id already stored, and one id sent twice at once (exactly one of the two wins).
    let twice = Uuid::now_v7();
    let mut plan: Vec<(NewMessage, Option<SendOutcome>)> = Vec::new();
    for index in 0..CONCURRENT_SENDS {
        let thread = &threads[index % 2];
        let sender = if index % 3 == 0 { &b1 } else { &a1 };
        let at_ms = T0_MS + 10 + i64::try_from(index).unwrap();
        let good = message(thread, sender, at_ms, &[a1.id, b1.id]);
        plan.push(match index % 10 {
            3 => (
                message(thread, sender, at_ms, &[a1.id, c1.id, b1.id]),
                Some(SendOutcome::NotARecipient(c1.id)),
            ),
            5 => (
                NewMessage {
                    id: stored_before.id,
                    ..good
                },
                Some(SendOutcome::DuplicateId),
            ),
            7 if index < 10 => (NewMessage { id: twice, ..good }, None),
            _ => (good, None),
        });
    }
    plan.push((
        NewMessage {
            id: twice,
            ..message(&threads[1], &b1, T0_MS + 99, &[a1.id, b1.id])
        },
        None,
    ));
    // One faulty message amid them (a key sealed twice to one device, which no client
    // sends): it fails alone, whatever it was stored with.
    let faulty = message(&threads[0], &a1, T0_MS + 50, &[a1.id, a1.id, b1.id]);
    let spawn = |message: NewMessage| {
        let store = store.clone();
        tokio::spawn(async move { store.insert_message(message).await })
    };
    let mut sends: Vec<_> = plan.iter().map(|(m, _)| spawn(m.clone())).collect();
    let faulty_send = spawn(faulty.clone());
    sends.extend(
        (0..CONCURRENT_SENDS)
            .map(|index| {
                let at_ms = T0_MS + 100 + i64::try_from(index).unwrap();
                message(&threads[index % 2], &a1, at_ms, &[a1.id, b1.id])
            })
            .map(|message| {
                plan.push((message.clone(), None));
                spawn(message)
            })
            .collect::<Vec<_>>(),
    );
    let mut outcomes = Vec::new();
    for send in sends {
        outcomes.push(send.await.unwrap().unwrap());
    }
    assert!(
        faulty_send.await.unwrap().is_err(),
        "a message sealed twice to one device is refused"
    );
    assert!(
        store
            .thread_messages(threads[0].id, a1.id, 0, limits::MESSAGES_PAGE_MAX)
            .await
            .unwrap()
            .iter()
            .all(|m| m.id != faulty.id)
    );

    let mut stored = std::collections::BTreeMap::new();
    let mut twice_won = Vec::new();
    for ((message, expected), outcome) in plan.iter().zip(&outcomes) {
        match (expected, outcome) {
            (Some(expected), outcome) => assert_eq!(outcome, expected, "{message:?}"),
            (None, SendOutcome::Sent { seq }) => {
                if message.id == twice {
                    twice_won.push(message.clone());
                }
                assert!(
                    stored.insert(*seq, message.clone()).is_none(),
                    "one seq each"
                );
            }
            (None, SendOutcome::DuplicateId) if message.id == twice => {}
            (None, other) => panic!("a good message was refused: {other:?}"),
        }
    }
    assert_eq!(
        twice_won.len(),
        1,
        "an id sent twice at once is stored once"
    );

    // What each conversation holds is exactly what was acknowledged, each with its keys.
    for thread in &threads {
        let mut expected: Vec<StoredMessage> = stored
            .iter()
            .filter(|(_, message)| message.thread == thread.id)
            .map(|(seq, message)| as_read_by(message, *seq, b1.id))
            .collect();
        if thread.id == threads[0].id {
            expected.insert(0, all_messages(&*store, thread.id, b1.id).await[0].clone());
        }
        assert_eq!(all_messages(&*store, thread.id, b1.id).await, expected);
        let newest = expected.last().unwrap();
        let read = store.thread(thread.id).await.unwrap().unwrap();
        assert_eq!(
            (read.last_message_seq, read.last_message_at_ms),
            (newest.seq, Some(newest.sent_at_ms))
        );
        for (user, device) in [(alice, a1.id), (bob, b1.id)] {
            let own_newest = expected
                .iter()
                .filter(|m| m.sender_device == device)
                .map(|m| m.seq)
                .max()
                .unwrap_or(0);
            assert_eq!(
                participant_of(&*store, thread.id, user).await.read_seq,
                own_newest
            );
        }
    }
    // The outsider's device received nothing.
    for thread in &threads {
        assert!(
            all_messages(&*store, thread.id, c1.id)
                .await
                .iter()
                .all(|m| m.key.is_none())
        );
    }
}
