//! The store worker: the one thread that owns the kiosk's SQLite file.
//!
//! The UI sends commands and polls events; SQLite and Argon2 (tens of
//! milliseconds per hash) never run on the UI thread. The plant sync
//! (`kiosk-store`'s `plant_sync`) is a task on the same thread and connection, started,
//! restarted and stopped as the saved settings name an offload service or
//! not. After every change to who is enrolled (here, or by a sync) the
//! worker publishes the gallery to the recognisers' [`GalleryFeed`]; the
//! recogniser's captured enrollment templates come straight here
//! ([`StoreWorker::capture_sink`]). No template crosses the UI thread.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use kubevision_offload_client::OffloadClient;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::Notify;

pub use crate::store::plant_sync::{self, SyncError, SyncPolicy};

use crate::auth::{Effect, PasswordOutcome};
use crate::recognition::{CaptureSink, Enrolled, GalleryFeed};
use crate::settings::{OffloadKey, Settings, SettingsError};
use crate::store::{
    now_millis, write_csv, AuditFilter, AuditRecord, ChainStatus, NewOperator, Operator,
    OperatorId, Role, SecretCheck, SecretKind, Store, StoreError, Subject,
};

/// An operator to create, owned so it can cross threads.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorDraft {
    pub name: String,
    pub personnel_no: String,
    pub role: Role,
    pub pin: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug)]
pub enum Command {
    /// Everything the UI needs at start.
    Load,
    /// Enrollment templates from the recogniser, for the next
    /// `CreateEnrolled` or `Enroll` (a newer capture replaces them).
    Captured(Vec<Vec<u8>>),
    /// Forgets a capture that was not saved (the enrollment was left):
    /// face data is held no longer than it is needed.
    DiscardCapture,
    /// A new operator with the captured face, in one transaction.
    CreateEnrolled {
        draft: OperatorDraft,
        actor: Option<String>,
    },
    CheckPin {
        operator: OperatorId,
        pin: String,
    },
    CheckPassword {
        personnel_no: String,
        password: String,
    },
    /// The recogniser named someone: who is it here, and are they locked?
    WhoIs {
        personnel_no: String,
    },
    /// Replaces the operator's templates with the captured ones.
    Enroll {
        operator: OperatorId,
        actor: Option<String>,
    },
    DeleteOperator {
        operator: OperatorId,
        actor: Option<String>,
    },
    Audit(AuditFilter),
    ExportAudit {
        filter: AuditFilter,
        path: PathBuf,
        actor: Option<String>,
    },
    SaveSettings {
        settings: Settings,
        actor: Option<String>,
    },
    /// Sets (or, with an empty user, removes) the account the line may
    /// call OPC UA `SignOut()` with; the password is hashed here, off the
    /// UI thread, and only the hash is saved.
    SetSignOutAccount {
        user: String,
        password: String,
        actor: Option<String>,
    },
    Apply(Vec<Effect>),
}

#[derive(Debug)]
pub enum Event {
    Loaded {
        operators: Vec<Operator>,
        settings: Settings,
    },
    PinChecked(SecretCheck),
    PasswordChecked(PasswordOutcome),
    /// `None`: nobody here has that personnel number (deleted meanwhile,
    /// or known to the plant gallery only).
    WhoIs {
        operator: Option<Operator>,
        locked_until: Option<i64>,
    },
    /// The operator list after an enrollment, a deletion or a sync, and
    /// the operator just enrolled here.
    Changed {
        operators: Vec<Operator>,
        enrolled: Option<Operator>,
    },
    Audit {
        records: Vec<AuditRecord>,
        chain: ChainStatus,
    },
    Exported(PathBuf),
    SettingsSaved(Settings),
    /// How the plant sync went, after each attempt.
    Plant(PlantStatus),
    Failed(String),
}

/// The plant sync as the status bar shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum PlantStatus {
    /// No offload service configured: nothing to sync.
    Off,
    /// The last sync got through.
    Synced,
    /// It did not; the sync retries with a growing pause.
    Unreachable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreWorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("writing {path}: {source}")]
    Export {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no captured face to save: capture the enrollment again")]
    NothingCaptured,
}

pub struct StoreWorker {
    commands: UnboundedSender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

/// Publishes the recogniser's gallery: every template, by the personnel
/// number of `operators` (the list the worker just read for the UI).
fn publish_gallery(
    store: &Store,
    operators: &[Operator],
    feed: &GalleryFeed,
) -> Result<(), StoreError> {
    let numbers: std::collections::HashMap<OperatorId, &str> = operators
        .iter()
        .map(|o| (o.id, o.personnel_no.as_str()))
        .collect();
    let gallery: Enrolled = store
        .templates()?
        .into_iter()
        .filter_map(|(id, t)| Some((numbers.get(&id)?.to_string(), t)))
        .collect();
    feed.publish(gallery);
    Ok(())
}

/// What the worker keeps besides the store.
struct Held {
    /// The last enrollment capture, until saved.
    captured: Option<Vec<Vec<u8>>>,
}

fn handle(
    store: &mut Store,
    held: &mut Held,
    request: Command,
) -> Result<Option<Event>, StoreWorkerError> {
    let now = now_millis();
    Ok(Some(match request {
        Command::Load => Event::Loaded {
            operators: store.operators()?,
            settings: Settings::load(store)?,
        },
        Command::Captured(templates) => {
            held.captured = Some(templates);
            return Ok(None);
        }
        Command::DiscardCapture => {
            held.captured = None;
            return Ok(None);
        }
        Command::CreateEnrolled { draft, actor } => {
            let templates = held
                .captured
                .take()
                .ok_or(StoreWorkerError::NothingCaptured)?;
            let new = NewOperator {
                name: &draft.name,
                personnel_no: &draft.personnel_no,
                role: draft.role,
                pin: draft.pin.as_deref(),
                password: draft.password.as_deref(),
            };
            let created =
                store.create_enrolled_operator(&new, &templates, actor.as_deref(), now)?;
            Event::Changed {
                operators: store.operators()?,
                enrolled: Some(created),
            }
        }
        Command::CheckPin { operator, pin } => {
            Event::PinChecked(store.check_secret(operator, SecretKind::Pin, &pin, now)?)
        }
        Command::CheckPassword {
            personnel_no,
            password,
        } => Event::PasswordChecked(match store.operator_by_personnel_no(&personnel_no)? {
            None => {
                store.check_unknown_secret(&password);
                PasswordOutcome::UnknownPersonnelNo(personnel_no)
            }
            Some(op) => {
                let check = store.check_secret(op.id, SecretKind::Password, &password, now)?;
                PasswordOutcome::Checked(op, check)
            }
        }),
        Command::WhoIs { personnel_no } => {
            let operator = store.operator_by_personnel_no(&personnel_no)?;
            let locked_until = match &operator {
                Some(op) => store.locked_until(Subject::Operator(op.id), now)?,
                None => None,
            };
            Event::WhoIs {
                operator,
                locked_until,
            }
        }
        Command::Enroll { operator, actor } => {
            let templates = held
                .captured
                .take()
                .ok_or(StoreWorkerError::NothingCaptured)?;
            store.enroll(operator, &templates, actor.as_deref(), now)?;
            Event::Changed {
                operators: store.operators()?,
                enrolled: store.operator(operator)?,
            }
        }
        Command::DeleteOperator { operator, actor } => {
            store.delete_operator(operator, actor.as_deref(), now)?;
            Event::Changed {
                operators: store.operators()?,
                enrolled: None,
            }
        }
        Command::Audit(filter) => Event::Audit {
            records: store.audit(&filter)?,
            chain: store.verify_chain()?,
        },
        Command::ExportAudit {
            filter,
            path,
            actor,
        } => {
            let records = store.audit(&filter)?;
            let export = |path: &PathBuf| -> std::io::Result<()> {
                let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
                write_csv(&records, &mut file)?;
                std::io::Write::flush(&mut file)
            };
            export(&path).map_err(|source| StoreWorkerError::Export {
                path: path.clone(),
                source,
            })?;
            let event = crate::store::AuditEvent::new(crate::store::AuditAction::AuditExported)
                .actor_opt(actor.as_deref())
                .detail(format!("{} rows to {}", records.len(), path.display()));
            store.append_audit(&event, now)?;
            Event::Exported(path)
        }
        Command::SaveSettings { settings, actor } => {
            settings.save(store, actor.as_deref(), now)?;
            Event::SettingsSaved(Settings::load(store)?)
        }
        Command::SetSignOutAccount {
            user,
            password,
            actor,
        } => {
            let mut settings = Settings::load(store)?;
            settings
                .line
                .set_sign_out_account(&user, &password, store.secrets())?;
            settings.save(store, actor.as_deref(), now)?;
            Event::SettingsSaved(Settings::load(store)?)
        }
        Command::Apply(effects) => {
            for effect in effects {
                match effect {
                    Effect::Audit(e) => {
                        store.append_audit(&e, now)?;
                    }
                    Effect::Failure(subject, e) => {
                        store.record_failure(subject, &e, now)?;
                    }
                    Effect::Success(subject, e) => store.record_success(subject, &e, now)?,
                }
            }
            return Ok(None);
        }
    }))
}

/// The worker thread's state.
struct Worker {
    store: Rc<RefCell<Store>>,
    held: Held,
    feed: Arc<GalleryFeed>,
    events: Sender<Event>,
    wake: Arc<dyn Fn() + Send + Sync>,
    policy: SyncPolicy,
    /// Wakes the sync (a local change to push).
    sync_wake: Rc<Notify>,
    /// The running sync and the settings it was started for.
    sync: Option<(OffloadKey, tokio::task::JoinHandle<()>)>,
}

impl Worker {
    fn send(&self, event: Event) {
        let _ = self.events.send(event);
        (self.wake)();
    }

    /// Starts, restarts or stops the plant sync for `settings`.
    fn follow(&mut self, settings: &Settings) {
        let key = settings.offload_key();
        if self.sync.as_ref().is_some_and(|(k, _)| *k == key) {
            return;
        }
        if let Some((_, task)) = self.sync.take() {
            task.abort();
        }
        let config = match settings.offload_client() {
            Ok(Some(config)) => config,
            Ok(None) => return self.send(Event::Plant(PlantStatus::Off)),
            Err(why) => return self.send(Event::Plant(PlantStatus::Unreachable(why.to_string()))),
        };
        let client = match OffloadClient::new(config) {
            Ok(c) => c,
            Err(e) => return self.send(Event::Plant(PlantStatus::Unreachable(e.to_string()))),
        };
        let changed = {
            let store = Rc::clone(&self.store);
            let feed = Arc::clone(&self.feed);
            let events = self.events.clone();
            let wake = Arc::clone(&self.wake);
            move |outcome: plant_sync::Round| {
                let event = match outcome {
                    plant_sync::Round::Changed => {
                        let store = store.borrow();
                        let published = store.operators().and_then(|operators| {
                            publish_gallery(&store, &operators, &feed).map(|()| operators)
                        });
                        match published {
                            Ok(operators) => {
                                let _ = events.send(Event::Changed {
                                    operators,
                                    enrolled: None,
                                });
                                Event::Plant(PlantStatus::Synced)
                            }
                            Err(e) => Event::Failed(e.to_string()),
                        }
                    }
                    plant_sync::Round::Unchanged => Event::Plant(PlantStatus::Synced),
                    plant_sync::Round::Failed(why) => Event::Plant(PlantStatus::Unreachable(why)),
                };
                let _ = events.send(event);
                wake();
            }
        };
        let task = tokio::task::spawn_local(plant_sync::run(
            Rc::clone(&self.store),
            client,
            self.policy,
            Rc::clone(&self.sync_wake),
            changed,
        ));
        self.sync = Some((key, task));
    }

    fn on_command(&mut self, command: Command) {
        let result = handle(&mut self.store.borrow_mut(), &mut self.held, command);
        let event = result.unwrap_or_else(|e| {
            tracing::warn!("store: {e}");
            Some(Event::Failed(e.to_string()))
        });
        if let Some(Event::Loaded { settings, .. } | Event::SettingsSaved(settings)) = &event {
            let settings = settings.clone();
            self.follow(&settings);
        }
        // A load, an enrollment or a deletion: the recognisers get the
        // gallery that goes with the operator list the UI is sent.
        if let Some(Event::Loaded { operators, .. } | Event::Changed { operators, .. }) = &event {
            if let Err(e) = publish_gallery(&self.store.borrow(), operators, &self.feed) {
                self.send(Event::Failed(e.to_string()));
            }
            // The plant should hear of it soon.
            self.sync_wake.notify_one();
        }
        if let Some(event) = event {
            self.send(event);
        }
    }
}

impl StoreWorker {
    /// Starts the worker on `store`; it publishes the gallery to `feed`
    /// and syncs with the plant gallery, as the settings say, by `policy`.
    pub fn start(
        store: Store,
        feed: Arc<GalleryFeed>,
        policy: SyncPolicy,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> StoreWorker {
        let (commands, mut command_rx) = unbounded_channel::<Command>();
        let (event_tx, events) = crossbeam_channel::unbounded();
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(wake);
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = event_tx.send(Event::Failed(format!("store worker: {e}")));
                        return;
                    }
                };
                let tasks = tokio::task::LocalSet::new();
                tasks.block_on(&runtime, async move {
                    let mut worker = Worker {
                        store: Rc::new(RefCell::new(store)),
                        held: Held { captured: None },
                        feed,
                        events: event_tx,
                        wake,
                        policy,
                        sync_wake: Rc::new(Notify::new()),
                        sync: None,
                    };
                    // Queued commands are all handled before the thread
                    // ends: effects sent last (a sign-out's audit row)
                    // still get written.
                    while let Some(command) = command_rx.recv().await {
                        worker.on_command(command);
                    }
                    if let Some((_, task)) = worker.sync.take() {
                        task.abort();
                    }
                });
            })
            .expect("spawning the store thread");
        StoreWorker {
            commands,
            events,
            thread: Some(thread),
        }
    }

    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Where the recogniser leaves an enrollment's templates: straight to
    /// this worker, not through the UI.
    pub fn capture_sink(&self) -> CaptureSink {
        // Weak: a recogniser that outlives the worker must not keep its
        // channel open (the worker ends when the channel closes).
        let commands = self.commands.downgrade();
        Box::new(move |templates| {
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Captured(templates));
            }
        })
    }

    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.events.try_iter()
    }

    /// Waits for the next event; for tests and the command line.
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for StoreWorker {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the queued commands.
        let (closed, _) = unbounded_channel();
        self.commands = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::Role;

    fn draft(no: &str) -> OperatorDraft {
        OperatorDraft {
            name: "Jana Keller".into(),
            personnel_no: no.into(),
            role: Role::Administrator,
            pin: None,
            password: Some("correct horse 1".into()),
        }
    }

    fn next(worker: &StoreWorker) -> Event {
        worker
            .recv_timeout(Duration::from_secs(20))
            .expect("the store worker answers")
    }

    /// A capture is used once, and a discarded one is gone: saving after
    /// `DiscardCapture` fails with a clear error instead of using stale faces.
    #[test]
    fn a_capture_is_saved_once_and_a_discarded_one_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_dir(dir.path()).unwrap();
        let worker = StoreWorker::start(store, GalleryFeed::new(), SyncPolicy::default(), || {});
        let template = vision::template::AnyTemplate::of_crop(
            &vision::lbph::LbphParams::default(),
            &vision::GrayImage::from_fn(92, 112, |x, y| {
                image::Luma([((x * 7 + y * 3) % 251) as u8])
            }),
        )
        .unwrap()
        .to_bytes();

        worker.capture_sink()(vec![template.clone()]);
        worker.send(Command::DiscardCapture);
        worker.send(Command::CreateEnrolled {
            draft: draft("A-1"),
            actor: None,
        });
        match next(&worker) {
            Event::Failed(e) => assert!(e.contains("no captured face"), "{e}"),
            other => panic!("{other:?}"),
        }

        worker.capture_sink()(vec![template]);
        worker.send(Command::CreateEnrolled {
            draft: draft("A-1"),
            actor: None,
        });
        assert!(matches!(
            next(&worker),
            Event::Changed {
                enrolled: Some(_),
                ..
            }
        ));
        // Used once: a second save has nothing to save.
        worker.send(Command::CreateEnrolled {
            draft: draft("A-2"),
            actor: None,
        });
        match next(&worker) {
            Event::Failed(e) => assert!(e.contains("no captured face"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
