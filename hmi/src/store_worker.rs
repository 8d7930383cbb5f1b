//! The store worker: the one thread that owns the kiosk's SQLite file. The UI sends requests and polls replies; SQLite and
//! Argon2 (tens of milliseconds per hash) never run on the UI thread.

use std::path::PathBuf;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::auth::{Effect, PasswordOutcome};
use crate::settings::{Settings, SettingsError};
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
    /// A new operator with their face, in one transaction.
    CreateEnrolled {
        draft: OperatorDraft,
        templates: Vec<Vec<u8>>,
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
    /// The recogniser named a label: who is it, and are they locked?
    WhoIs {
        label: i32,
    },
    Enroll {
        operator: OperatorId,
        templates: Vec<Vec<u8>>,
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
    Apply(Vec<Effect>),
}

#[derive(Debug)]
pub enum Event {
    Loaded {
        operators: Vec<Operator>,
        gallery: Vec<(i32, Vec<u8>)>,
        settings: Settings,
    },
    PinChecked(SecretCheck),
    PasswordChecked(PasswordOutcome),
    /// `None`: the label belongs to nobody any more (deleted meanwhile).
    WhoIs {
        operator: Option<Operator>,
        locked_until: Option<i64>,
    },
    /// The operator list and gallery after an enrollment or deletion, and
    /// the operator just enrolled.
    Changed {
        operators: Vec<Operator>,
        gallery: Vec<(i32, Vec<u8>)>,
        enrolled: Option<Operator>,
    },
    Audit {
        records: Vec<AuditRecord>,
        chain: ChainStatus,
    },
    Exported(PathBuf),
    SettingsSaved(Settings),
    Failed(String),
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
}

pub struct StoreWorker {
    requests: Sender<Command>,
    replies: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
}

/// The recogniser's labels are operator ids.
pub fn label_of(id: OperatorId) -> i32 {
    i32::try_from(id.0).unwrap_or(i32::MAX)
}

/// The store's templates as the recogniser takes them.
pub fn labelled(templates: Vec<(OperatorId, Vec<u8>)>) -> Vec<(i32, Vec<u8>)> {
    templates
        .into_iter()
        .map(|(id, t)| (label_of(id), t))
        .collect()
}

fn gallery(store: &Store) -> Result<Vec<(i32, Vec<u8>)>, StoreError> {
    Ok(labelled(store.templates()?))
}

fn handle(store: &mut Store, request: Command) -> Result<Option<Event>, StoreWorkerError> {
    let now = now_millis();
    Ok(Some(match request {
        Command::Load => Event::Loaded {
            operators: store.operators()?,
            gallery: gallery(store)?,
            settings: Settings::load(store)?,
        },
        Command::CreateEnrolled {
            draft,
            templates,
            actor,
        } => {
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
                gallery: gallery(store)?,
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
        Command::WhoIs { label } => {
            let operator = store.operator(OperatorId(i64::from(label)))?;
            let locked_until = match &operator {
                Some(op) => store.locked_until(Subject::Operator(op.id), now)?,
                None => None,
            };
            Event::WhoIs {
                operator,
                locked_until,
            }
        }
        Command::Enroll {
            operator,
            templates,
            actor,
        } => {
            store.enroll(operator, &templates, actor.as_deref(), now)?;
            Event::Changed {
                operators: store.operators()?,
                gallery: gallery(store)?,
                enrolled: store.operator(operator)?,
            }
        }
        Command::DeleteOperator { operator, actor } => {
            store.delete_operator(operator, actor.as_deref(), now)?;
            Event::Changed {
                operators: store.operators()?,
                gallery: gallery(store)?,
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

impl StoreWorker {
    pub fn start(mut store: Store, wake: impl Fn() + Send + 'static) -> StoreWorker {
        let (requests, request_rx) = crossbeam_channel::unbounded::<Command>();
        let (reply_tx, replies) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || {
                for request in request_rx {
                    let reply = handle(&mut store, request).unwrap_or_else(|e| {
                        tracing::warn!("store: {e}");
                        Some(Event::Failed(e.to_string()))
                    });
                    if let Some(reply) = reply {
                        let _ = reply_tx.send(reply);
                        wake();
                    }
                }
            })
            .expect("spawning the store thread");
        StoreWorker {
            requests,
            replies,
            thread: Some(thread),
        }
    }

    pub fn send(&self, request: Command) {
        let _ = self.requests.send(request);
    }

    pub fn replies(&self) -> impl Iterator<Item = Event> + '_ {
        self.replies.try_iter()
    }

    /// Waits for the next reply; for tests and the command line.
    pub fn recv_timeout(&self, timeout: std::time::Duration) -> Option<Event> {
        self.replies.recv_timeout(timeout).ok()
    }
}

impl Drop for StoreWorker {
    fn drop(&mut self) {
        // Closing the channel ends the thread after the queued requests:
        // effects sent last (a sign-out's audit row) still get written.
        let (closed, _) = crossbeam_channel::unbounded();
        self.requests = closed;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
