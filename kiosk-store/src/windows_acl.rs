//! Windows: a folder or file of ours readable by its owner only, as `0700`
//! and `0600` make it on Unix.
//!
//! The kiosk's data lives under `ProgramData\KubeVision\data`, whose
//! inherited ACL lets every local user read (the Users group has read and
//! execute on `ProgramData`). The secrets folder (audit key, PIN pepper,
//! anchor) must not be readable that way: a copy of it gives away the
//! keyed audit chain and the offline PIN search. So it gets a protected
//! DACL (nothing inherited from above): full control for the user the
//! kiosk runs as, SYSTEM and the Administrators group, inherited by the
//! files and folders created inside it.

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use windows_sys::Win32::Foundation::{CloseHandle, LocalFree, HANDLE};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, SetFileSecurityW, TokenUser, DACL_SECURITY_INFORMATION,
    PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, TOKEN_QUERY, TOKEN_USER,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

/// The security descriptor (SDDL) given to private folders and files: a
/// protected DACL with SYSTEM, Administrators and `user_sid`, each with full
/// control, inherited by what is created inside (`OICI`).
pub(crate) fn private_sddl(user_sid: &str) -> String {
    format!("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;{user_sid})")
}

/// Replaces the DACL of `path` with [`private_sddl`] for the current user.
pub(crate) fn restrict_to_owner(path: &Path) -> io::Result<()> {
    let sddl = wide(private_sddl(&current_user_sid()?).as_ref());
    let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; on success `descriptor` is a
    // LocalAlloc'd self-relative descriptor, freed below.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let target = wide(path.as_os_str());
    // SAFETY: both pointers are valid for the call.
    let set = unsafe {
        SetFileSecurityW(
            target.as_ptr(),
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            descriptor,
        )
    };
    let error = (set == 0).then(io::Error::last_os_error);
    // SAFETY: allocated by the conversion above, used no more.
    unsafe { LocalFree(descriptor as _) };
    error.map_or(Ok(()), Err)
}

/// The current process's user as a string SID (`S-1-5-21-…`).
fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process needs no closing.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let result = token_user_sid(token);
    // SAFETY: opened above.
    unsafe { CloseHandle(token) };
    result
}

fn token_user_sid(token: HANDLE) -> io::Result<String> {
    // TOKEN_USER and its SID: 8-byte aligned storage, asked for its size first.
    let mut len = 0u32;
    // SAFETY: a size query with no buffer.
    unsafe { GetTokenInformation(token, TokenUser, ptr::null_mut(), 0, &mut len) };
    let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
    // SAFETY: `buf` holds at least `len` bytes.
    let ok =
        unsafe { GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: filled by GetTokenInformation as a TOKEN_USER.
    let sid = unsafe { (*(buf.as_ptr() as *const TOKEN_USER)).User.Sid };
    let mut text: *mut u16 = ptr::null_mut();
    // SAFETY: `sid` points into `buf`, alive here; `text` is LocalAlloc'd.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a NUL-terminated UTF-16 string from the call above.
    let s = unsafe {
        let n = (0..).take_while(|&i| *text.add(i) != 0).count();
        String::from_utf16_lossy(std::slice::from_raw_parts(text, n))
    };
    // SAFETY: allocated by ConvertSidToStringSidW.
    unsafe { LocalFree(text as _) };
    Ok(s)
}

fn wide(s: &std::ffi::OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use windows_sys::Win32::Security::Authorization::ConvertSecurityDescriptorToStringSecurityDescriptorW;
    use windows_sys::Win32::Security::GetFileSecurityW;

    /// The DACL of `path` as SDDL, read back from the file system.
    fn dacl_of(path: &Path) -> String {
        let target = wide(path.as_os_str());
        let mut len = 0u32;
        unsafe {
            GetFileSecurityW(
                target.as_ptr(),
                DACL_SECURITY_INFORMATION,
                ptr::null_mut(),
                0,
                &mut len,
            )
        };
        let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
        let ok = unsafe {
            GetFileSecurityW(
                target.as_ptr(),
                DACL_SECURITY_INFORMATION,
                buf.as_mut_ptr().cast(),
                len,
                &mut len,
            )
        };
        assert_ne!(ok, 0, "GetFileSecurityW: {}", io::Error::last_os_error());
        let mut text: *mut u16 = ptr::null_mut();
        let ok = unsafe {
            ConvertSecurityDescriptorToStringSecurityDescriptorW(
                buf.as_mut_ptr().cast(),
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut text,
                ptr::null_mut(),
            )
        };
        assert_ne!(ok, 0, "to SDDL: {}", io::Error::last_os_error());
        let s = unsafe {
            let n = (0..).take_while(|&i| *text.add(i) != 0).count();
            String::from_utf16_lossy(std::slice::from_raw_parts(text, n))
        };
        unsafe { LocalFree(text as _) };
        s
    }

    /// Windows keeps the protected DACL as written. Wine 8.0, where CI runs
    /// this, keeps it as the Unix mode of the file (owner only here) and
    /// reads back a DACL made from that mode: the protection flag and the
    /// Administrators entry do not survive there, so what is asserted is
    /// what both keep: the kiosk's user has full control, and nobody but
    /// that user, SYSTEM and Administrators is allowed anything.
    #[test]
    fn a_private_folder_is_closed_to_other_users_and_its_files_inherit_that() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        // The secrets folder and its key files, as a kiosk's first start makes them.
        crate::keys::Secrets::load_or_create(&secrets).unwrap();
        let sid = current_user_sid().unwrap();
        assert!(sid.starts_with("S-1-"), "{sid}");
        let mut paths = vec![secrets.clone()];
        for entry in std::fs::read_dir(&secrets).unwrap() {
            paths.push(entry.unwrap().path());
        }
        assert!(paths.len() >= 3, "no key files made: {paths:?}");
        for path in paths {
            let dacl = dacl_of(&path);
            // Each ACE is (type;flags;rights;object;inherited object;account).
            let aces: Vec<Vec<&str>> = dacl
                .split('(')
                .skip(1)
                .map(|ace| ace.trim_end_matches(')').split(';').collect())
                .collect();
            assert!(
                aces.iter()
                    .any(|a| a.len() == 6 && a[0] == "A" && a[2] == "FA" && a[5] == sid),
                "{}: the kiosk's user lacks full control: {dacl}",
                path.display()
            );
            for ace in &aces {
                let account = ace.last().copied().unwrap_or("");
                assert!(
                    ace[0] != "A" || account == "SY" || account == "BA" || account == sid,
                    "{} lets {account} in: {dacl}",
                    path.display()
                );
            }
        }
    }
}
