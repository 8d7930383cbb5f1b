//! The cluster panel: connect (kubeconfig file or Rancher), list the nodes,
//! deploy or upgrade the offload service and follow its rollout, remove it,
//! and make a ready release the kiosk's offload endpoint. Every cluster
//! call runs on the cluster worker, which the app starts on the first
//! request; this screen asks by [`Action::Cluster`] and hears its events.

use eframe::egui::{self, RichText, Ui};
use kubevision_cluster::{NodeInfo, Progress, ReleaseStatus};

use super::{header, Action, Nav};
use crate::app::Kiosk;
use crate::cluster_worker::{Command, Event, Target};
use crate::i18n::T;
use crate::store_worker;
use crate::theme;
use crate::widgets::{
    big_button, big_icon_button, choice_value, icons, primary_icon_button, Field, FieldKind, Form,
};

pub struct ClusterView {
    /// Whether the connection is through Rancher rather than a kubeconfig file.
    rancher: bool,
    kubeconfig: Form,
    rancher_form: Form,
    gpu: bool,
    /// Remove awaits confirmation; `delete_gallery` is its checkbox.
    confirm_remove: bool,
    delete_gallery: bool,
    /// A command is under way: the buttons wait for it.
    busy: bool,
    connected: bool,
    nodes: Vec<NodeInfo>,
    progress: Option<Progress>,
    status: Option<ReleaseStatus>,
    removed: bool,
    error: Option<String>,
    /// The name this kiosk registers under.
    kiosk_name: Form,
    /// Registration wrote these files; the settings are still to point at them.
    registered_files: Option<Vec<std::path::PathBuf>>,
    registered: Option<String>,
}

fn form(fields: &[(T, FieldKind)]) -> Form {
    let mut form = Form::new(
        fields
            .iter()
            .map(|&(label, kind)| Field::new(label, kind))
            .collect(),
    );
    form.fields.iter_mut().for_each(|f| f.max_len = 256);
    form
}

/// The host name (the OS's, on Linux and Windows alike), lower-cased: a good
/// default for the kiosk's identity ("kiosk" if none).
fn default_kiosk_name() -> String {
    let host = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_lowercase();
    if host.is_empty() {
        "kiosk".into()
    } else {
        host
    }
}

impl Default for ClusterView {
    fn default() -> Self {
        ClusterView {
            rancher: false,
            kubeconfig: form(&[(T::Kubeconfig, FieldKind::Text)]),
            rancher_form: form(&[
                (T::RancherUrl, FieldKind::Text),
                (T::ApiToken, FieldKind::Secret),
                (T::ClusterName, FieldKind::Text),
            ]),
            // The chart's default.
            gpu: true,
            confirm_remove: false,
            delete_gallery: false,
            busy: false,
            connected: false,
            nodes: Vec::new(),
            progress: None,
            status: None,
            removed: false,
            error: None,
            kiosk_name: {
                let mut f = form(&[(T::KioskName, FieldKind::Text)]);
                f.fields[0].value = default_kiosk_name();
                f
            },
            registered_files: None,
            registered: None,
        }
    }
}

impl ClusterView {
    /// Whether a command is under way (for tests).
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// The last command's failure, in plain words (for tests).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    fn send(&mut self, out: &mut Vec<Action>, command: Command) {
        self.busy = true;
        self.error = None;
        out.push(Action::Cluster(command));
    }

    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::Nodes(nodes) => {
                self.nodes = nodes;
                self.connected = true;
            }
            Event::Status(status) => self.status = Some(status),
            Event::Progress(progress) => self.progress = Some(progress),
            Event::Removed(_) => {
                self.removed = true;
                self.progress = None;
            }
            Event::Registered { name, files } => {
                self.registered = Some(name);
                self.registered_files = Some(files);
            }
            Event::Failed(e) => self.error = Some(e),
            Event::Done => self.busy = false,
        }
    }

    fn active_form(&mut self) -> &mut Form {
        if self.rancher {
            &mut self.rancher_form
        } else {
            &mut self.kubeconfig
        }
    }

    fn target(&self) -> Target {
        if self.rancher {
            let value = |i: usize| self.rancher_form.fields[i].value.trim().to_owned();
            Target::Rancher {
                url: value(0),
                token: value(1),
                cluster: value(2),
            }
        } else {
            Target::Kubeconfig(self.kubeconfig.fields[0].value.trim().into())
        }
    }

    pub fn show(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) -> Option<Nav> {
        if let Some(files) = self.registered_files.take() {
            // tls.crt, tls.key, ca.crt: the offload client's mTLS identity.
            let path = |i: usize| files.get(i).map(|p| p.display().to_string());
            let mut settings = kiosk.settings.clone();
            if let (Some(cert), Some(key), Some(ca)) = (path(0), path(1), path(2)) {
                settings.tls_cert = cert;
                settings.tls_key = key;
                settings.tls_ca = ca;
                out.push(Action::Store(store_worker::Command::SaveSettings {
                    settings,
                    actor: kiosk.actor(),
                }));
            }
        }
        let nav = header(ui, kiosk, T::Cluster, icons::ICON_HUB);
        let lang = kiosk.lang();
        egui::ScrollArea::vertical()
            .auto_shrink([false, true])
            .show(ui, |ui| {
                ui.columns(2, |columns| {
                    let ui = &mut columns[0];
                    ui.horizontal(|ui| {
                        // Product names, the same in every language.
                        choice_value(ui, &mut self.rancher, false, "kubeconfig");
                        choice_value(ui, &mut self.rancher, true, "Rancher");
                    });
                    self.active_form().show_fields(ui, lang);
                    let idle = !self.busy;
                    if ui
                        .add_enabled_ui(idle, |ui| {
                            primary_icon_button(ui, icons::ICON_LINK, kiosk.t(T::Connect))
                        })
                        .inner
                        .clicked()
                    {
                        let target = self.target();
                        self.connected = false;
                        self.send(out, Command::Connect(target));
                    }
                    if self.status.as_ref().is_some_and(|s| s.rolled_out) {
                        self.registration(ui, kiosk, out);
                    }
                    self.release_panel(&mut columns[1], kiosk, out);
                });
                // Full width: the keyboard is wider than a column.
                self.active_form().show_input(ui, lang);
            });
        nav
    }

    /// Actions, nodes, rollout, failures and the endpoint.
    fn release_panel(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) {
        let usable = self.connected && !self.busy;
        ui.add_enabled_ui(usable, |ui| {
            ui.horizontal_wrapped(|ui| {
                if big_icon_button(ui, icons::ICON_REFRESH, kiosk.t(T::Refresh)).clicked() {
                    self.send(out, Command::Refresh);
                }
                let gpu =
                    egui::Button::selectable(self.gpu, RichText::new(kiosk.t(T::Gpu)).size(28.0))
                        .min_size(egui::vec2(120.0, 64.0));
                if ui.add(gpu).clicked() {
                    self.gpu = !self.gpu;
                }
                if primary_icon_button(ui, icons::ICON_CLOUD_UPLOAD, kiosk.t(T::DeployUpgrade))
                    .clicked()
                {
                    self.progress = None;
                    self.removed = false;
                    self.send(out, Command::Deploy { gpu: self.gpu });
                }
                if big_icon_button(ui, icons::ICON_DELETE, kiosk.t(T::Remove)).clicked() {
                    self.confirm_remove = true;
                }
            });
            if self.confirm_remove {
                ui.label(
                    RichText::new(kiosk.t(T::ConfirmRemove)).color(theme::palette(ui.ctx()).bad),
                );
                ui.checkbox(&mut self.delete_gallery, kiosk.t(T::AlsoDeleteGallery));
                ui.horizontal(|ui| {
                    let remove = egui::Button::new(
                        RichText::new(kiosk.t(T::Remove))
                            .size(28.0)
                            .color(theme::palette(ui.ctx()).bad),
                    )
                    .min_size(egui::vec2(220.0, 64.0));
                    if ui.add(remove).clicked() {
                        self.confirm_remove = false;
                        self.send(
                            out,
                            Command::Remove {
                                delete_gallery: self.delete_gallery,
                            },
                        );
                    }
                    if big_button(ui, kiosk.t(T::Cancel)).clicked() {
                        self.confirm_remove = false;
                    }
                });
            }
        });
        if self.busy {
            ui.spinner();
        }
        if let Some(e) = &self.error {
            ui.label(RichText::new(e).color(theme::palette(ui.ctx()).bad));
        }
        if let Some(p) = &self.progress {
            let fraction = p.ready as f32 / p.desired.max(1) as f32;
            ui.add(egui::ProgressBar::new(fraction).text(&p.message));
        }
        self.nodes_table(ui, kiosk);
        if self.removed {
            ui.label(kiosk.t(T::Removed));
        }
        let Some(status) = &self.status else {
            return;
        };
        if status.objects.is_empty() {
            ui.label(kiosk.t(T::NotDeployed));
        }
        for failure in &status.failures {
            ui.label(RichText::new(failure.to_string()).color(theme::palette(ui.ctx()).bad));
        }
        let Some(endpoint) = status.endpoint.as_ref().filter(|_| status.rolled_out) else {
            return;
        };
        let endpoint = endpoint.to_string();
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!("{}: {endpoint}", kiosk.t(T::OffloadEndpoint))).strong(),
            );
            if big_button(ui, kiosk.t(T::UseAsOffloadEndpoint)).clicked() {
                let mut settings = kiosk.settings.clone();
                settings.offload_endpoint = endpoint.clone();
                out.push(Action::Store(store_worker::Command::SaveSettings {
                    settings,
                    actor: kiosk.actor(),
                }));
            }
            // The app applies saved settings to the kiosk: this shows they were stored.
            if kiosk.settings.offload_endpoint == endpoint {
                ui.label(
                    RichText::new(kiosk.t(T::EndpointSaved)).color(theme::palette(ui.ctx()).good),
                );
            }
        });
    }

    /// Registration: this kiosk's certificate and identity at the plant
    /// service, and the plant's PIN pepper.
    fn registration(&mut self, ui: &mut Ui, kiosk: &Kiosk, out: &mut Vec<Action>) {
        let lang = kiosk.lang();
        self.kiosk_name.show_fields(ui, lang);
        let name = self.kiosk_name.fields[0].value.trim().to_owned();
        let ready = self.connected && !self.busy && !name.is_empty();
        if ui
            .add_enabled_ui(ready, |ui| big_button(ui, kiosk.t(T::RegisterKiosk)))
            .inner
            .clicked()
        {
            self.registered = None;
            let dir = kiosk.secrets_dir().to_owned();
            self.send(out, Command::Register { name, dir });
        }

        if let Some(name) = &self.registered {
            ui.label(
                RichText::new(format!("{name}: {}", kiosk.t(T::KioskRegistered)))
                    .color(theme::palette(ui.ctx()).good),
            );
        }
    }

    fn nodes_table(&self, ui: &mut Ui, kiosk: &Kiosk) {
        if self.nodes.is_empty() {
            return;
        }
        egui::Grid::new("nodes")
            .num_columns(4)
            .spacing([24.0, 8.0])
            .striped(true)
            .show(ui, |ui| {
                for title in [T::Node, T::Hardware, T::Gpus, T::NodeReady] {
                    ui.label(RichText::new(kiosk.t(title)).strong());
                }
                ui.end_row();
                for node in &self.nodes {
                    ui.label(&node.name);
                    ui.label(node.hardware.as_deref().unwrap_or("-"));
                    ui.label(node.gpus.to_string());
                    let (text, colour) = if node.ready {
                        (T::NodeReady, theme::palette(ui.ctx()).good)
                    } else {
                        (T::NodeNotReady, theme::palette(ui.ctx()).bad)
                    };
                    ui.label(RichText::new(kiosk.t(text)).color(colour));
                    ui.end_row();
                }
            });
    }
}
