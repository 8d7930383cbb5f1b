<#
.SYNOPSIS
  Builds target\wix\kubevision-<version>-x86_64.msi on a Windows machine: the
  release binaries, then the MSI from main.wxs with the WiX Toolset 3.

.DESCRIPTION
  -Models names the folder holding dlib's two model files
  (dlib_face_recognition_resnet_model_v1.dat, shape_predictor_5_face_landmarks.dat;
  see scripts/setup-models for their pinned download and SHA-256).
  Needs: Rust (rustup, x86_64-pc-windows-msvc with the Visual Studio Build
  Tools, or x86_64-pc-windows-gnu with MinGW-w64) and the WiX Toolset 3.x
  (candle and light; the WIX environment variable its installer sets). The
  programs are pure Rust: no OpenCV, dlib or other DLLs are shipped.
  CI builds the same MSI on Linux with wixl instead (installer/windows/
  build-msi.sh) and tests it under Wine (test-msi.sh). Run from any folder:

    powershell -ExecutionPolicy Bypass -File installer\windows\build.ps1
#>
param(
    [string]$Models = $env:KUBEVISION_MODELS_DIR
)
$ErrorActionPreference = "Stop"
$ModelFiles = @("dlib_face_recognition_resnet_model_v1.dat", "shape_predictor_5_face_landmarks.dat")
foreach ($f in $ModelFiles) {
    if (-not $Models -or -not (Test-Path "$Models\$f")) { throw "-Models: $f not found in '$Models'" }
}
$Repo = (Resolve-Path "$PSScriptRoot\..\..").Path

function Invoke-Checked([string]$What, [scriptblock]$Command) {
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

Push-Location $Repo
try {
    # 1. The two programs the installer ships.
    Invoke-Checked "cargo build" { cargo build --release --locked -p kubevision-hmi -p kubevision-cli }
    $Version = (& "$Repo\target\release\kubevision.exe" --version).Split(" ")[-1]
    if ($LASTEXITCODE -ne 0) { throw "kubevision.exe --version failed" }

    # 2. The stage main.wxs reads: the programs, the cascade, the configuration.
    $Stage = "$Repo\target\wix\stage"
    Remove-Item -Recurse -Force $Stage -ErrorAction SilentlyContinue
    New-Item -ItemType Directory -Force $Stage | Out-Null
    Copy-Item "$Repo\target\release\kubevision-hmi.exe", "$Repo\target\release\kubevision.exe" $Stage
    Copy-Item "$Repo\assets\cascades\haarcascade_frontalface_default.xml" $Stage
    Copy-Item "$Repo\installer\windows\kubevision.toml" $Stage
    foreach ($f in $ModelFiles) { Copy-Item "$Models\$f" $Stage }

    # 3. The MSI.
    $Bin = Join-Path $env:WIX "bin"
    $Obj = "$Repo\target\wix\main.wixobj"
    $Msi = "$Repo\target\wix\kubevision-$Version-x86_64.msi"
    Invoke-Checked "candle" { & "$Bin\candle.exe" -nologo -arch x64 "-dVersion=$Version" "-dStageDir=$Stage" -out $Obj "$Repo\installer\windows\main.wxs" }
    Invoke-Checked "light" { & "$Bin\light.exe" -nologo -out $Msi $Obj }
    Write-Host "built $Msi"
}
finally {
    Pop-Location
}
