/*
 * bcryptprimitives.dll for Wine 8.0, which lacks it.
 *
 * Rust's standard library (1.78 and newer) takes its random bytes from
 * ProcessPrng in bcryptprimitives.dll, which every Windows 10/11 has; Wine 8.0
 * (Debian 12) does not ship that DLL, so every Rust program fails to start
 * there (STATUS_DLL_NOT_FOUND, c0000135). This DLL exports ProcessPrng over
 * BCryptGenRandom with the system RNG, which Wine does have: the same bytes a
 * Windows machine would give, from the same kind of source. It is installed
 * into the test Wine prefix only (scripts/setup-windows), never shipped.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    /* BCryptGenRandom takes a ULONG length: ask in pieces. */
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
