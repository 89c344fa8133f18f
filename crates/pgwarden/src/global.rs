//! The optional process-wide accessor: one [`Warden`] per process, initialised once and the same
//! instance everywhere. A thin convenience over ordinary construction; libraries should take a
//! `&Warden` instead.

use std::sync::OnceLock;

use crate::config::Settings;
use crate::error::Error;
use crate::warden::Warden;

static GLOBAL: OnceLock<Warden> = OnceLock::new();

/// The process-wide [`Warden`], built from the environment on first call. A failed build is not
/// remembered: the next call tries again.
pub fn global() -> Result<&'static Warden, Error> {
    if let Some(warden) = GLOBAL.get() {
        return Ok(warden);
    }
    let warden = Warden::from_env()?;
    // Another thread may have won the race; either way the stored instance is returned.
    let _ = GLOBAL.set(warden);
    Ok(GLOBAL.get().expect("set above"))
}

/// Installs `settings` as the process-wide [`Warden`]. Returns the existing instance unchanged
/// if one was already installed (`Ok(false)` tells the caller its settings were not used).
pub fn init_global(settings: Settings) -> Result<(&'static Warden, bool), Error> {
    if let Some(warden) = GLOBAL.get() {
        return Ok((warden, false));
    }
    let installed = GLOBAL.set(Warden::new(settings)?).is_ok();
    Ok((GLOBAL.get().expect("set above"), installed))
}
