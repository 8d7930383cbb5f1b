<#
.SYNOPSIS
  Builds target\wix\kubevision-<version>-x86_64.msi: OpenCV from vcpkg, the
  release binaries, the OpenCV DLLs harvested with heat.exe, cargo wix.

.DESCRIPTION
  Needs: Visual Studio Build Tools (C++), Rust (x86_64-pc-windows-msvc), LLVM
  (libclang for the opencv crate's bindings), Git, the WiX Toolset 3.x
  (candle/light/heat; the WIX environment variable its installer sets) and
  cargo-wix (cargo install cargo-wix). Run from any folder:

    powershell -ExecutionPolicy Bypass -File installer\windows\build.ps1

.PARAMETER Vcpkg
  A vcpkg checkout; cloned and bootstrapped there when missing.
#>
param(
    [string]$Vcpkg = "$env:USERPROFILE\vcpkg",
    [string]$Triplet = "x64-windows",
    [string]$LibClang = "$env:ProgramFiles\LLVM\bin"
)
$ErrorActionPreference = "Stop"
$Repo = (Resolve-Path "$PSScriptRoot\..\..").Path

function Invoke-Checked([string]$What, [scriptblock]$Command) {
    & $Command
    if ($LASTEXITCODE -ne 0) { throw "$What failed (exit code $LASTEXITCODE)" }
}

# 1. OpenCV 4 with the contrib modules (face: LBPH) through vcpkg.
if (-not (Test-Path "$Vcpkg\vcpkg.exe")) {
    Invoke-Checked "git clone vcpkg" { git clone https://github.com/microsoft/vcpkg.git $Vcpkg }
    Invoke-Checked "bootstrap-vcpkg" { & "$Vcpkg\bootstrap-vcpkg.bat" -disableMetrics }
}
Invoke-Checked "vcpkg install opencv4" { & "$Vcpkg\vcpkg.exe" install "opencv4[contrib]:$Triplet" }
$Installed = "$Vcpkg\installed\$Triplet"

# 2. Tell the opencv crate where OpenCV is, instead of its probes.
$Include = @("$Installed\include\opencv4", "$Installed\include") |
    Where-Object { Test-Path "$_\opencv2\core.hpp" } | Select-Object -First 1
if (-not $Include) { throw "no opencv2\core.hpp under $Installed\include" }
$Libs = Get-ChildItem "$Installed\lib\opencv_*.lib" | ForEach-Object { $_.BaseName }
if (-not $Libs) { throw "no opencv_*.lib in $Installed\lib" }
$env:OPENCV_INCLUDE_PATHS = $Include
$env:OPENCV_LINK_PATHS = "$Installed\lib"
$env:OPENCV_LINK_LIBS = $Libs -join ","
$env:LIBCLANG_PATH = $LibClang

# 3. The two programs the installer ships.
Push-Location $Repo
try {
    Invoke-Checked "cargo build" { cargo build --release --locked -p kubevision-hmi -p kubevision-cli }
    # The DLLs go next to the programs, as in the installed folder.
    $Stage = "$Repo\target\wix\opencv"
    Remove-Item -Recurse -Force $Stage -ErrorAction SilentlyContinue
    New-Item -ItemType Directory -Force $Stage | Out-Null
    Copy-Item "$Installed\bin\*.dll" $Stage
    $env:PATH = "$Stage;$env:PATH"

    # A smoke test before packaging: the program starts and finds its DLLs.
    $Version = & "$Repo\target\release\kubevision.exe" --version
    if ($LASTEXITCODE -ne 0) { throw "kubevision.exe --version failed: a DLL missing from $Stage?" }

    # 4. Harvest the DLLs (vcpkg installs exactly OpenCV's dependency closure)
    #    into the component group main.wxs refers to.
    $Heat = Join-Path $env:WIX "bin\heat.exe"
    Invoke-Checked "heat" {
        & $Heat dir $Stage -nologo -cg OpenCvDlls -dr APPLICATIONFOLDER -gg -g1 -srd -sfrag -sreg `
            -var var.OpenCvDir -out "$Repo\target\wix\opencv.wxs"
    }

    # 5. The MSI.
    Invoke-Checked "cargo wix" {
        cargo wix --package kubevision-hmi --no-build --nocapture `
            --include "$Repo\installer\windows\main.wxs" --include "$Repo\target\wix\opencv.wxs" `
            --compiler-arg "-dOpenCvDir=$Stage" --compiler-arg "-dRepoDir=$Repo" `
            --compiler-arg "-ext" --compiler-arg "WixUtilExtension" `
            --linker-arg "-ext" --linker-arg "WixUtilExtension" `
            --output "$Repo\target\wix\"
    }
    Write-Host "built $Version installer in $Repo\target\wix"
}
finally {
    Pop-Location
}
