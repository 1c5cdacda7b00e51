//! `coffer-server kms ...`: the built-in key service's keys (see `crate::kms`
//! of the library and docs/encryption.md).

use anyhow::Context as _;
use clap::Subcommand;
use coffer_server::kms::{BuiltinKms, KeyProvider as _};
use coffer_server::meta::{KmsKeyState, MetaStore};

/// Days a deletion waits by default, and the range AWS KMS allows.
const DEFAULT_PENDING_DAYS: u32 = 30;
const PENDING_DAYS: std::ops::RangeInclusive<u32> = 7..=30;

#[derive(Subcommand)]
pub enum KmsCommand {
    /// Create a KMS key and print its id and ARN.
    Create { name: String },
    /// List KMS keys with their state.
    List,
    /// Disable a key: objects encrypted under it become unreadable, and it
    /// encrypts nothing new, until it is enabled again.
    Disable { id: String },
    /// Enable a disabled key (or cancel a scheduled deletion).
    Enable { id: String },
    /// Schedule a key's deletion, as KMS does: it is unusable at once and
    /// deleted for good (its objects unreadable forever) after the window.
    Delete {
        id: String,
        /// Days until the key is deleted (7 to 30).
        #[arg(long, default_value_t = DEFAULT_PENDING_DAYS)]
        pending_window_in_days: u32,
    },
}

fn date(ms: i64) -> String {
    coffer_server::meta::millis_to_datetime(ms)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub async fn run(meta: MetaStore, region: String, command: KmsCommand) -> anyhow::Result<()> {
    let kms = BuiltinKms::new(meta.clone(), region);
    let existing = |id: String| {
        let meta = meta.clone();
        async move {
            meta.get_kms_key(&id)
                .await?
                .with_context(|| format!("no KMS key {id}"))
        }
    };
    match command {
        KmsCommand::Create { name } => {
            let key = kms.create_key(&name).await?;
            println!("KeyId: {}", key.id);
            println!("Arn: {}", kms.arn(&key.id));
        }
        KmsCommand::List => {
            println!(
                "{:<38} {:<20} {:<16} {:<26} DELETION",
                "KEY ID", "NAME", "STATE", "CREATED"
            );
            for key in meta.list_kms_keys().await? {
                println!(
                    "{:<38} {:<20} {:<16} {:<26} {}",
                    key.id,
                    key.name,
                    key.state.as_str(),
                    date(key.created_at),
                    key.deletion_date.map(date).unwrap_or_default()
                );
            }
        }
        KmsCommand::Disable { id } => {
            let key = existing(id).await?;
            meta.set_kms_key_state(&key.id, KmsKeyState::Disabled, None)
                .await?;
            println!("Disabled {}", key.id);
        }
        KmsCommand::Enable { id } => {
            let key = existing(id).await?;
            meta.set_kms_key_state(&key.id, KmsKeyState::Enabled, None)
                .await?;
            println!("Enabled {}", key.id);
        }
        KmsCommand::Delete {
            id,
            pending_window_in_days,
        } => {
            anyhow::ensure!(
                PENDING_DAYS.contains(&pending_window_in_days),
                "--pending-window-in-days must be between 7 and 30"
            );
            let key = existing(id).await?;
            let when = coffer_server::meta::now_millis()
                + i64::from(pending_window_in_days) * 24 * 3600 * 1000;
            meta.set_kms_key_state(&key.id, KmsKeyState::PendingDeletion, Some(when))
                .await?;
            println!("DeletionDate: {}", date(when));
        }
    }
    Ok(())
}
