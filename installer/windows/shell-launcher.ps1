<#
.SYNOPSIS
  Makes the KubeVision kiosk the Windows shell of the kiosk user (Shell
  Launcher, Windows 10/11 IoT Enterprise or Enterprise); administrators keep
  Explorer.

.DESCRIPTION
  Run as administrator after installing the MSI:

    powershell -ExecutionPolicy Bypass -File shell-launcher.ps1 -KioskUser kiosk
    powershell -ExecutionPolicy Bypass -File shell-launcher.ps1 -KioskUser kiosk -Remove

  Enables the Client-EmbeddedShellLauncher feature (a restart may follow),
  sets kubevision-hmi.exe as the custom shell of -KioskUser through the
  WESL_UserSetting WMI class, restarts it when it exits, keeps explorer.exe
  for Administrators and every other account, and gives the kiosk user
  write access to the store folder. Sign the kiosk user in automatically
  (Autologon, or the Assigned Access settings) to start the kiosk at boot.
#>
#Requires -RunAsAdministrator
param(
    [Parameter(Mandatory = $true)][string]$KioskUser,
    [string]$InstallDir = "$env:ProgramFiles\KubeVision",
    [string]$DataDir = "$env:ProgramData\KubeVision\data",
    [switch]$Remove
)
$ErrorActionPreference = "Stop"

# WESL_UserSetting's actions when the shell exits.
$RestartShell = 0
$AdministratorsSid = "S-1-5-32-544"

$Feature = Get-WindowsOptionalFeature -Online -FeatureName Client-EmbeddedShellLauncher
if ($Feature.State -ne "Enabled") {
    Enable-WindowsOptionalFeature -Online -FeatureName Client-EmbeddedShellLauncher -All -NoRestart | Out-Null
    Write-Warning "Shell Launcher was just enabled: restart Windows, then run this script again."
    exit 3010
}

$Sid = (New-Object System.Security.Principal.NTAccount($KioskUser)).Translate(
    [System.Security.Principal.SecurityIdentifier]).Value
$Launcher = [wmiclass]"\\localhost\root\standardcimv2\embedded:WESL_UserSetting"

# A user may have one custom shell: drop an earlier one (absent the first time).
try { $Launcher.RemoveCustomShell($Sid) | Out-Null } catch { }

if ($Remove) {
    Write-Host "$KioskUser gets Explorer again"
    exit 0
}

$Kiosk = Join-Path $InstallDir "kubevision-hmi.exe"
if (-not (Test-Path $Kiosk)) { throw "$Kiosk is missing: install the KubeVision MSI first" }
$Shell = "`"$Kiosk`" --data-dir `"$DataDir`""

$Launcher.SetDefaultShell("explorer.exe", $RestartShell) | Out-Null
try { $Launcher.RemoveCustomShell($AdministratorsSid) | Out-Null } catch { }
$Launcher.SetCustomShell($AdministratorsSid, "explorer.exe", $null, $null, $RestartShell) | Out-Null
$Launcher.SetCustomShell($Sid, $Shell, $null, $null, $RestartShell) | Out-Null
$Launcher.SetEnabled($true) | Out-Null

# The kiosk creates and writes its store as the kiosk user.
New-Item -ItemType Directory -Force $DataDir | Out-Null
& icacls $DataDir /grant "${KioskUser}:(OI)(CI)M" | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls failed for $DataDir" }

Write-Host "$KioskUser's shell: $Shell (restarted when it exits); Administrators and others: explorer.exe"
& (Join-Path $InstallDir "kubevision.exe") doctor --data-dir $DataDir
