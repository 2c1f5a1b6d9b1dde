//! Saved devices (profiles) in the sidebar: save the form, switch in one click, export and
//! import as JSON. Keys are stored only when "remember key" is ticked.

use leptos::prelude::*;
use twinscope_proto::text::Quoted;

use super::keyed::{key_of, keyed};
use leptos::wasm_bindgen::JsCast;

use super::model::ConnectForm;
use super::panels::{error_line, TextField};
use crate::client::{download_text, storage_get, storage_set};
use crate::tools::profiles::{has_secret, Profile, Profiles, STORAGE_KEY};

fn load() -> (Profiles, Option<String>) {
    match storage_get(STORAGE_KEY) {
        None => (Profiles::default(), None),
        Some(text) => match Profiles::from_json(&text) {
            Ok(p) => (p, None),
            Err(e) => (
                Profiles::default(),
                Some(format!(
                    "the saved profiles could not be read ({e}); saving will replace them"
                )),
            ),
        },
    }
}

/// The saved profiles, shared by the sidebar and the Provision panel (which saves to it).
#[derive(Clone, Copy)]
pub struct ProfileStore {
    /// The profiles.
    pub profiles: RwSignal<Profiles>,
    /// Why the stored profiles could not be read, if so.
    pub load_error: RwSignal<Option<String>>,
}

impl ProfileStore {
    /// Reads localStorage.
    pub fn load() -> ProfileStore {
        let (p, e) = load();
        ProfileStore {
            profiles: RwSignal::new(p),
            load_error: RwSignal::new(e),
        }
    }

    /// Saves `p` (replacing one of the same name) and stores the set.
    pub fn save(&self, p: Profile) -> Result<(), String> {
        let mut all = self.profiles.get_untracked();
        all.upsert(p);
        storage_set(STORAGE_KEY, &all.to_json())?;
        self.profiles.set(all);
        Ok(())
    }
}

#[component]
pub fn ProfilesSection(
    conn_string: RwSignal<String>,
    current: Callback<(), ConnectForm>,
    fill: Callback<ConnectForm>,
) -> impl IntoView {
    let store_ctx = expect_context::<ProfileStore>();
    let profiles = store_ctx.profiles;
    let load_error = store_ctx.load_error.get_untracked();
    let name = RwSignal::new(String::new());
    let remember = RwSignal::new(false);
    let with_keys = RwSignal::new(false);
    let status = RwSignal::new(load_error.map(Err::<String, String>));

    let store =
        move |p: &Profiles| -> Result<(), String> { storage_set(STORAGE_KEY, &p.to_json()) };
    let save = move |_| {
        let r = Profile::new(
            &name.get_untracked(),
            &conn_string.get_untracked(),
            remember.get_untracked(),
            current.run(()),
        )
        .and_then(|p| {
            let label = p.name.clone();
            let keyed = p.remember_key && has_secret(&p.connection_string);
            let mut all = profiles.get_untracked();
            all.upsert(p);
            store(&all)?;
            profiles.set(all);
            Ok(if keyed {
                format!("saved {} with its key", Quoted(&label))
            } else {
                format!("saved {} without its key", Quoted(&label))
            })
        });
        status.set(Some(r));
    };
    let switch = move |p: Profile| {
        conn_string.set(p.connection_string.clone());
        fill.run(p.settings.clone());
        name.set(p.name.clone());
        remember.set(p.remember_key);
        status.set(Some(Ok(if has_secret(&p.connection_string) {
            format!("{} filled in; connect when ready", Quoted(&p.name))
        } else {
            format!(
                "{} filled in without its key: paste the key after SharedAccessKey= and connect",
                Quoted(&p.name)
            )
        })));
    };
    let remove = move |n: String| {
        let mut all = profiles.get_untracked();
        all.remove(&n);
        let r = store(&all).map(|()| format!("removed {}", Quoted(&n)));
        if r.is_ok() {
            profiles.set(all);
        }
        status.set(Some(r));
    };
    let export = move |_| {
        let text = profiles.with_untracked(|p| p.export(with_keys.get_untracked()));
        let r = download_text("twinscope-profiles.json", "application/json", &text)
            .map(|_| {
                format!(
                    "exported {} profile(s){}",
                    profiles.with_untracked(|p| p.profiles.len()),
                    if with_keys.get_untracked() {
                        " with keys"
                    } else {
                        " without keys"
                    }
                )
            })
            .ok_or_else(|| "the browser did not allow the download".to_string());
        status.set(Some(r));
    };
    let import = move |ev: leptos::ev::Event| {
        let Some(input) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
        else {
            return;
        };
        let Some(file) = input.files().and_then(|f| f.get(0)) else {
            return;
        };
        leptos::task::spawn_local(async move {
            let text = wasm_bindgen_futures::JsFuture::from(file.text())
                .await
                .ok()
                .and_then(|t| t.as_string());
            let r = text
                .ok_or_else(|| "the file could not be read".to_string())
                .and_then(|t| Profiles::from_json(&t))
                .and_then(|incoming| {
                    let mut all = profiles.get_untracked();
                    let n = all.import(incoming);
                    store(&all)?;
                    profiles.set(all);
                    Ok(format!("imported {n} profile(s)"))
                });
            status.set(Some(r));
            input.set_value("");
        });
    };

    view! {
        <details class="advanced profiles" open>
            <summary>{move || format!("Profiles ({})", profiles.with(|p| p.profiles.len()))}</summary>
            <ul class="profile-list" data-testid="profile-list">
                {keyed(move || profiles.get().profiles, |p| key_of(&(&p.name, &p.connection_string)), move |p| {
                        let pick = p.clone();
                        let gone = p.name.clone();
                        view! {
                            <li class="profile-item" data-testid="profile-item">
                                <button type="button" class="btn btn--small profile-pick" on:click=move |_| switch(pick.clone())
                                    title="Fill in this device">
                                    <span class="profile-name">{p.name.clone()}</span>
                                    <span class="muted mono">{p.summary()}</span>
                                    {(p.remember_key && has_secret(&p.connection_string)).then(|| view! { <span class="badge">"key"</span> })}
                                </button>
                                <button type="button" class="btn btn--small" aria-label=format!("Remove profile {}", p.name)
                                    on:click=move |_| remove(gone.clone())>"✕"</button>
                            </li>
                        }
                })}
            </ul>
            <TextField label="Profile name" testid="profile-name" value=name placeholder="lab sensor" />
            <label class="check">
                <input type="checkbox" data-testid="profile-remember-key" bind:checked=remember />
                <span>"Remember key: stored unencrypted in this browser's localStorage, readable by anyone using this browser profile."</span>
            </label>
            <div class="actions">
                <button type="button" class="btn btn--small" data-testid="profile-save" on:click=save>"Save current device"</button>
            </div>
            <div class="actions">
                <button type="button" class="btn btn--small" data-testid="profile-export" on:click=export>"Export JSON"</button>
                <label class="check inline">
                    <input type="checkbox" data-testid="profile-export-keys" bind:checked=with_keys />
                    <span>"with keys"</span>
                </label>
                <label class="btn btn--small file-btn">
                    "Import JSON"
                    <input type="file" accept="application/json,.json" data-testid="profile-import" on:change=import />
                </label>
            </div>
            {move || status.get().map(|r| match r {
                Ok(t) => view! { <p class="muted" role="status" data-testid="profile-status">{t}</p> }.into_any(),
                Err(e) => error_line(e),
            })}
        </details>
    }
}
