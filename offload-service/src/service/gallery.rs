//! GalleryService: enrollment, updates, removal, status and sync.

use std::sync::Arc;

use kubevision_proto::text::check_distinct;
use kubevision_proto::v1::gallery_service_server::GalleryService;
use kubevision_proto::v1::update_operator_request::Mode;
use kubevision_proto::v1::{
    sync_event, EnrollRequest, Frame, GalleryChange, GalleryStatus, GetGalleryStatusRequest,
    OperatorProfile, OperatorRemoval, OperatorUpsert, QuarantinedOperator, RemoveOperatorRequest,
    SyncComplete, SyncEvent, SyncGalleryRequest, SyncHeader, UpdateOperatorRequest,
};
use prost::bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::enrol_scope::{self, Change};
use super::{check_operator_id, invalid, profile, Core, Sighting, MAX_FRAMES, MAX_TEMPLATES};
use crate::admission::{Bounded, Ticket};
use crate::error::ServiceError;
use crate::gallery::{GalleryError, OperatorGallery};
use crate::store::{ChangeKind, Committed, UpdateMode};
use vision::template::AnyTemplate;

/// The operator's stored profile, for [`enrol_scope`]: read only for a
/// caller without `admin` (`Ok(None)` otherwise, unused); `Err(())` for a
/// profile that cannot be decoded. An operator not enrolled is NOT_FOUND.
async fn stored_profile(
    core: &Arc<Core>,
    ticket: &Ticket,
    caller: Option<&crate::identity::Caller>,
    operator_id: &str,
) -> Result<Result<Option<OperatorProfile>, ()>, ServiceError> {
    if caller.is_some_and(|c| c.may(crate::identity::Scope::Admin)) {
        return Ok(Ok(None));
    }
    let (core, id) = (core.clone(), operator_id.to_owned());
    let bytes = ticket
        .run(move || core.gallery.store().profile(&id))
        .await?
        .map_err(GalleryError::from)?;
    Ok(match bytes {
        None => Ok(None),
        Some(bytes) => profile::decode(&bytes).map(Some).ok_or(()),
    })
}

/// Sync events buffered ahead of a slow client.
const SYNC_BUFFER: usize = 4;

pub struct GalleryApi(pub Arc<Core>);

type SyncStream = ReceiverStream<Result<SyncEvent, Status>>;

#[tonic::async_trait]
impl GalleryService for GalleryApi {
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<GalleryChange>, Status> {
        self.0
            .handle(
                "Enroll",
                request,
                |core, ticket, mut req: EnrollRequest| async move {
                    req.operator_id = check_operator_id(&req.operator_id)?;
                    enrol_scope::check(
                        crate::identity::current().as_ref(),
                        &req.operator_id,
                        Change::Enrol {
                            profile: req.profile.as_ref(),
                        },
                    )?;
                    // No id that could pass for one enrolled already.
                    check_distinct(
                        "operator_id",
                        &req.operator_id,
                        core.gallery.operator_ids().iter().map(|id| &**id),
                    )?;
                    let profile = req
                        .profile
                        .as_ref()
                        .map(|p| profile::encode(p, core.pepper_id()))
                        .transpose()?;
                    let templates = enrollment_templates(
                        &core,
                        &ticket,
                        &req.operator_id,
                        req.frames,
                        req.templates,
                        false,
                        false,
                    )
                    .await?;
                    commit(&ticket, core, req.operator_id, move |gallery, actor, id| {
                        gallery.enroll(actor, id, &templates, profile.as_deref())
                    })
                    .await
                },
            )
            .await
    }

    async fn update_operator(
        &self,
        request: Request<UpdateOperatorRequest>,
    ) -> Result<Response<GalleryChange>, Status> {
        self.0
            .handle(
                "UpdateOperator",
                request,
                |core, ticket, mut req: UpdateOperatorRequest| async move {
                    req.operator_id = check_operator_id(&req.operator_id)?;
                    let mode = match req.mode() {
                        Mode::Unspecified | Mode::Append => UpdateMode::Append,
                        Mode::Replace => UpdateMode::Replace,
                    };
                    if core.gallery.label_of(&req.operator_id).is_none() {
                        return Err(ServiceError::UnknownOperator(req.operator_id));
                    }
                    let caller = crate::identity::current();
                    let stored =
                        stored_profile(&core, &ticket, caller.as_ref(), &req.operator_id).await?;
                    enrol_scope::check(
                        caller.as_ref(),
                        &req.operator_id,
                        Change::Update {
                            mode,
                            appends: !(req.frames.is_empty() && req.templates.is_empty()),
                            profile: req.profile.as_ref(),
                            stored: stored.as_ref().map(Option::as_ref).map_err(|_| ()),
                        },
                    )?;
                    let profile = req
                        .profile
                        .as_ref()
                        .map(|p| profile::encode(p, core.pepper_id()))
                        .transpose()?;
                    let templates = enrollment_templates(
                        &core,
                        &ticket,
                        &req.operator_id,
                        req.frames,
                        req.templates,
                        profile.is_some(),
                        mode == UpdateMode::Append,
                    )
                    .await?;
                    // A profile-only update never empties the templates.
                    let mode = if templates.is_empty() {
                        UpdateMode::Append
                    } else {
                        mode
                    };
                    commit(&ticket, core, req.operator_id, move |gallery, actor, id| {
                        gallery.update(actor, id, &templates, mode, profile.as_deref())
                    })
                    .await
                },
            )
            .await
    }

    async fn remove_operator(
        &self,
        request: Request<RemoveOperatorRequest>,
    ) -> Result<Response<GalleryChange>, Status> {
        self.0
            .handle(
                "RemoveOperator",
                request,
                |core, ticket, mut req: RemoveOperatorRequest| async move {
                    req.operator_id = check_operator_id(&req.operator_id)?;
                    let caller = crate::identity::current();
                    let stored =
                        stored_profile(&core, &ticket, caller.as_ref(), &req.operator_id).await?;
                    enrol_scope::check(
                        caller.as_ref(),
                        &req.operator_id,
                        Change::Remove {
                            stored: stored.as_ref().map(Option::as_ref).map_err(|_| ()),
                        },
                    )?;
                    commit(&ticket, core, req.operator_id, |gallery, actor, id| {
                        gallery.remove(actor, id)
                    })
                    .await
                },
            )
            .await
    }

    async fn get_gallery_status(
        &self,
        request: Request<GetGalleryStatusRequest>,
    ) -> Result<Response<GalleryStatus>, Status> {
        self.0
            .handle("GetGalleryStatus", request, |core, ticket, _| async move {
                let status = ticket.run({
                    let core = core.clone();
                    move || core.gallery.status()
                });
                let status = status.await??;
                Ok(GalleryStatus {
                    gallery_id: status.gallery_id,
                    version: status.version,
                    operator_count: status.operators as u32,
                    template_count: status.templates as u32,
                    backend: core.gallery.backend().name().into(),
                    template_format: Some(core.template_format()),
                    default_threshold: core.threshold,
                    accepts_camera_images: core.faces.detector_problem().is_none(),
                    quarantined: core
                        .gallery
                        .quarantined()
                        .into_iter()
                        .map(|(operator_id, reason)| QuarantinedOperator {
                            operator_id,
                            reason,
                        })
                        .collect(),
                })
            })
            .await
    }

    type SyncGalleryStream = Bounded<SyncStream>;

    async fn sync_gallery(
        &self,
        request: Request<SyncGalleryRequest>,
    ) -> Result<Response<Bounded<SyncStream>>, Status> {
        self.0.handle_stream("SyncGallery", request, sync).await
    }
}

/// Streams the changes from a blocking thread that reads one store
/// snapshot; the small channel applies back-pressure, so a large gallery is
/// never held in memory at once. Everything comes from the store of record,
/// not this replica's copy, so every replica gives the same answer. The
/// admission ticket travels with the stream, so concurrent syncs count
/// against the queue bound.
async fn sync(
    core: Arc<Core>,
    ticket: Ticket,
    req: SyncGalleryRequest,
) -> Result<SyncStream, ServiceError> {
    let since = req.since_version;
    let store_status = ticket.run({
        let core = core.clone();
        move || core.gallery.store().status()
    });
    let status = store_status.await?.map_err(GalleryError::from)?;
    // Versions only grow, so the snapshot read below is at least this new.
    if since > status.version {
        return Err(ServiceError::ClientAhead {
            since,
            current: status.version,
        });
    }
    let (tx, rx) = mpsc::channel(SYNC_BUFFER);
    let header = SyncHeader {
        gallery_id: status.gallery_id,
        since_version: since,
        template_format: Some(core.template_format()),
    };
    tokio::task::spawn_blocking(move || {
        let _ticket = ticket;
        let send = |event| {
            tx.blocking_send(Ok(SyncEvent { event: Some(event) }))
                .is_ok()
        };
        if !send(sync_event::Event::Header(header)) {
            return;
        }
        let result = core.gallery.store().changes_since(since, &mut |c| {
            send(match c.kind {
                // Nothing of a damaged operator is sent: the kiosk keeps
                // what it has until they are enrolled again.
                ChangeKind::Damaged { index, .. } => {
                    tracing::warn!(operator_id = %c.operator_id, index, "sync: skipping an operator whose stored templates are damaged");
                    return true;
                }
                ChangeKind::Upsert {
                    templates, profile, ..
                } => sync_event::Event::Upsert(OperatorUpsert {
                    operator_id: c.operator_id,
                    version: c.version,
                    templates: templates.into_iter().map(Into::into).collect(),
                    profile: profile.as_deref().and_then(profile::decode),
                }),
                ChangeKind::Removal => sync_event::Event::Removal(OperatorRemoval {
                    operator_id: c.operator_id,
                    version: c.version,
                }),
            })
        });
        match result {
            Ok(snapshot) => {
                send(sync_event::Event::Complete(SyncComplete {
                    version: snapshot.version,
                }));
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(ServiceError::from(GalleryError::from(e)).into()));
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

/// The templates an enrollment stores, encoded: of every frame (each must
/// show a usable face) a template of every recogniser this replica can
/// make (a probe template sent as a frame: itself), then the templates a
/// kiosk made, each valid by its own kind and at least one of the
/// gallery's recogniser. Together, of every kind (and with the operator's
/// stored ones when `with_stored`: an update that appends), they may not
/// make a "wolf" near many other operators of the gallery (see
/// [`crate::wolf`]; `operator_id`'s own templates do not count).
/// `may_be_empty`: an update that only replaces the profile.
async fn enrollment_templates(
    core: &Arc<Core>,
    ticket: &Ticket,
    operator_id: &str,
    frames: Vec<Frame>,
    templates: Vec<Bytes>,
    may_be_empty: bool,
    with_stored: bool,
) -> Result<Vec<Vec<u8>>, ServiceError> {
    match (frames.len(), templates.len()) {
        (0, 0) if may_be_empty => return Ok(Vec::new()),
        (0, 0) => {
            return Err(invalid(
                "no frames or templates were sent: send at least one".into(),
            ))
        }
        (n, _) if n > MAX_FRAMES => {
            return Err(invalid(format!(
                "{n} frames were sent; at most {MAX_FRAMES} are accepted"
            )))
        }
        (_, n) if n > MAX_TEMPLATES => {
            return Err(invalid(format!(
                "{n} templates were sent; at most {MAX_TEMPLATES} are accepted"
            )))
        }
        _ => {}
    }
    let core = core.clone();
    let operator_id = operator_id.to_owned();
    ticket
        .run_cancellable(move |cancel| {
            let kind = core.recogniser.kind();
            // Each template with where it came from, for a wolf's reason.
            let mut made: Vec<(AnyTemplate, String)> = Vec::new();
            let sightings = core.sightings(&frames, cancel, |sighting| match sighting {
                Sighting::Face(face) => core
                    .recogniser
                    .every_template(&face)
                    .map_err(ServiceError::Template),
                Sighting::Template(t) => Ok(vec![t]),
            })?;
            for (index, sighting) in sightings.into_iter().enumerate() {
                let of_frame = sighting.map_err(|unusable| ServiceError::NoUsableFace {
                    index,
                    reason: unusable.to_string(),
                })?;
                made.extend(of_frame.into_iter().map(|t| (t, format!("frame {index}"))));
            }
            let mut sent = Vec::with_capacity(templates.len());
            for (index, bytes) in templates.iter().enumerate() {
                let template = AnyTemplate::decode(bytes, core.recogniser.params())
                    .map_err(|e| invalid(format!("template {index}: {e}")))?;
                sent.push((template, format!("template {index}")));
            }
            if !sent.is_empty() && !sent.iter().any(|(t, _)| t.kind() == kind) {
                return Err(invalid(format!(
                    "none of the {} templates sent is a {kind} template: this gallery matches with the {kind} recogniser, so at least one must be (templates of other recognisers are kept beside it)",
                    sent.len()
                )));
            }
            made.extend(sent);
            let (mut lbph, mut lbph_names) = (Vec::new(), Vec::new());
            let (mut dlib, mut dlib_names) = (Vec::new(), Vec::new());
            for (template, name) in &made {
                match template {
                    AnyTemplate::Lbph(t) => {
                        lbph.push(t.clone());
                        lbph_names.push(name.as_str());
                    }
                    AnyTemplate::Dlib(e) => {
                        dlib.push((**e).clone());
                        dlib_names.push(name.as_str());
                    }
                }
            }
            // A frame gives a template of each kind: the name says which.
            let name = |k: vision::recogniser::Kind, i: usize| match k {
                vision::recogniser::Kind::Lbph => lbph_names[i].to_owned(),
                vision::recogniser::Kind::Dlib => dlib_names[i].to_owned(),
            };
            let name = |k, i| {
                if k == kind {
                    name(k, i)
                } else {
                    format!("{} ({k})", name(k, i))
                }
            };
            if let Some(wolf) =
                core.gallery
                    .find_wolf(&operator_id, &lbph, &dlib, &name, with_stored)?
            {
                return Err(wolf.into());
            }
            // Sent templates are stored as they came (their bytes were
            // checked by decoding); made ones encoded.
            let mut encoded: Vec<Vec<u8>> = Vec::with_capacity(made.len());
            let from_frames = made.len() - templates.len();
            encoded.extend(made[..from_frames].iter().map(|(t, _)| t.to_bytes()));
            encoded.extend(templates.iter().map(|b| b.to_vec()));
            Ok(encoded)
        })
        .await?
}

/// Applies a change to the gallery on a worker and reports it; the change
/// log records the caller's identity (read here: the task-local does not
/// reach the worker thread).
async fn commit(
    ticket: &Ticket,
    core: Arc<Core>,
    operator_id: String,
    change: impl FnOnce(&OperatorGallery, &str, &str) -> Result<Committed, GalleryError>
        + Send
        + 'static,
) -> Result<GalleryChange, ServiceError> {
    let actor =
        crate::identity::current().map_or_else(|| "unknown".to_owned(), |c| c.name.to_string());
    let (operator_id, c) = ticket
        .run(move || change(&core.gallery, &actor, &operator_id).map(|c| (operator_id, c)))
        .await??;
    Ok(GalleryChange {
        operator_id,
        gallery_version: c.version,
        template_count: c.template_count as u32,
    })
}
