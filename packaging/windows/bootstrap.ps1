<#
.SYNOPSIS
    Build (or rebuild) Finetune Studio's Python environment beside this script: the Windows half of
    install.sh. The Inno Setup installer runs it after copying its files; "Finetune Studio repair"
    in the Start menu runs it again.

.DESCRIPTION
    1. Picks the torch build from the NVIDIA driver (torch_variant.py), unless -Variant says.
    2. Creates venv.new with uv from the hash-pinned lock locks\windows-<variant>.txt, online
       (PyPI, torch from download.pytorch.org) or offline from a wheelhouse (no network at all).
    3. Installs the app wheel, checks the requirements and the imports.
    4. Swaps venv.new in for venv; a failure leaves the previous venv untouched.
    User data (%LOCALAPPDATA%\finetune-studio) is never touched. Written for Windows PowerShell 5.1.

.PARAMETER Variant
    auto (default), cpu, cu126 or cu130.

.PARAMETER Wheelhouse
    A folder of wheels for an offline install: either the wheels themselves, or a folder holding
    windows-<variant>\ subfolders (what packaging/wheelhouse.sh writes). A python\ subfolder with a
    python-build-standalone archive serves uv when the machine has no Python of the lock's version.

.PARAMETER Python
    The Python for the environment: a version (default: the lock's, e.g. 3.11) or a path.
#>
[CmdletBinding()]
param(
    [ValidateSet('auto', 'cpu', 'cu126', 'cu130')]
    [string]$Variant = 'auto',
    [string]$Wheelhouse = '',
    [string]$Python = ''
)

$ErrorActionPreference = 'Stop'
$App = $PSScriptRoot
$Log = Join-Path $App 'bootstrap.log'
$Uv = Join-Path $App 'uv.exe'

function Invoke-Checked {
    param([string]$Exe, [string[]]$Arguments)
    # Local to this function: Windows PowerShell 5.1 turns a native program's stderr (uv's
    # progress lines) into errors, which 'Stop' would throw; the exit code decides instead.
    $ErrorActionPreference = 'Continue'
    & $Exe @Arguments 2>&1 | ForEach-Object { Write-Host $_ }
    if ($LASTEXITCODE -ne 0) {
        throw "$(Split-Path -Leaf $Exe) $($Arguments -join ' ') failed with exit code $LASTEXITCODE"
    }
}

function Find-Python {
    param([string]$Spec)
    $ErrorActionPreference = 'Continue'
    $found = & $Uv python find $Spec 2>$null
    if ($LASTEXITCODE -ne 0) { return $null }
    return ($found | Select-Object -First 1)
}

function Read-LockHeader {
    param([string]$Lock)
    $line = Select-String -Path $Lock -Pattern '^# finetune-studio lock: (.+)$' | Select-Object -First 1
    if (-not $line) { throw "$Lock has no '# finetune-studio lock:' header" }
    $fields = @{}
    foreach ($pair in $line.Matches[0].Groups[1].Value -split ' ') {
        $kv = $pair -split '=', 2
        if ($kv.Count -eq 2) { $fields[$kv[0]] = $kv[1] }
    }
    return $fields
}

function Quote-Value {
    # install.env is read with Python's shlex: single quotes, ' written as '\''
    param([string]$Value)
    return "'" + ($Value -replace "'", "'\''") + "'"
}

Start-Transcript -Path $Log -Append | Out-Null
$exitCode = 0
try {
    if (-not (Test-Path $Uv)) { throw "$Uv is missing; reinstall Finetune Studio" }
    # Managed Pythons go inside the app folder: removed on uninstall, shared by every user.
    $env:UV_PYTHON_INSTALL_DIR = Join-Path $App 'python'
    $wheel = Get-ChildItem -Path (Join-Path $App 'dist') -Filter 'finetune_studio-*-py3-none-any.whl' |
        Sort-Object LastWriteTime -Descending | Select-Object -First 1
    if (-not $wheel) { throw "no app wheel in $App\dist" }
    $version = ($wheel.Name -split '-')[1]

    $offline = $false
    if ($Wheelhouse) {
        if (-not (Test-Path $Wheelhouse -PathType Container)) { throw "wheelhouse $Wheelhouse is not a folder" }
        $offline = $true
        $env:UV_OFFLINE = '1'
        $env:UV_PYTHON_DOWNLOADS = 'never'
        $pythonMirror = Join-Path $Wheelhouse 'python'
        if (Test-Path $pythonMirror -PathType Container) {
            $env:UV_PYTHON_DOWNLOADS = 'automatic'
            $env:UV_PYTHON_INSTALL_MIRROR = ([System.Uri](Resolve-Path $pythonMirror).Path).AbsoluteUri
        }
    }

    # Any lock names the Python version; the detector needs a Python before the venv exists.
    $anyLock = Get-ChildItem -Path (Join-Path $App 'locks') -Filter 'windows-*.txt' | Select-Object -First 1
    if (-not $anyLock) { throw "no locks in $App\locks" }
    $pythonSpec = $Python
    if (-not $pythonSpec) { $pythonSpec = (Read-LockHeader $anyLock.FullName)['python'] }
    $basePython = Find-Python $pythonSpec
    if (-not $basePython) {
        Write-Host "Python $pythonSpec not found; installing it with uv"
        Invoke-Checked $Uv @('python', 'install', $pythonSpec)
        $basePython = Find-Python $pythonSpec
        if (-not $basePython) { throw "uv installed Python $pythonSpec but cannot find it" }
    }

    $reason = 'chosen with -Variant'
    if ($Variant -eq 'auto') {
        $json = & $basePython (Join-Path $App 'torch_variant.py') --json --os windows
        if ($LASTEXITCODE -ne 0) { throw 'the NVIDIA driver detection (torch_variant.py) failed' }
        $choice = ($json -join "`n") | ConvertFrom-Json
        $Variant = $choice.variant
        $reason = $choice.reason
        foreach ($warning in $choice.warnings) { Write-Warning $warning }
    }
    $lock = Join-Path $App "locks\windows-$Variant.txt"
    if (-not (Test-Path $lock)) {
        $have = (Get-ChildItem (Join-Path $App 'locks') -Filter 'windows-*.txt' | ForEach-Object {
            $_.BaseName -replace '^windows-', '' }) -join ', '
        throw ("this installer has no lock for the $Variant build (it has: $have). Rebuild it with " +
               "packaging/lock.sh windows-$Variant on a connected machine, or run the repair with -Variant")
    }
    $header = Read-LockHeader $lock
    Write-Host "Finetune Studio $version, $Variant build ($reason)"

    $sourceArgs = @()
    if ($offline) {
        $wheels = Join-Path $Wheelhouse "windows-$Variant"
        if (-not (Test-Path $wheels -PathType Container)) { $wheels = $Wheelhouse }
        $sourceArgs = @('--offline', '--no-index', '--find-links', $wheels)
        $mode = "offline from $wheels"
    } elseif ($header['torch-index'] -ne 'pypi') {
        # Hash-pinned, so taking each pin from whichever index has it is safe.
        $sourceArgs = @('--index-strategy', 'unsafe-best-match', '--extra-index-url', $header['torch-index'])
        $mode = "online (PyPI, torch from $($header['torch-index']))"
    } else {
        $mode = 'online (PyPI)'
    }

    $new = Join-Path $App 'venv.new'
    $current = Join-Path $App 'venv'
    $old = Join-Path $App 'venv.old'
    foreach ($dir in @($new, $old)) { if (Test-Path $dir) { Remove-Item -Recurse -Force $dir } }
    $started = Get-Date
    # --relocatable: the venv is renamed from venv.new to venv below.
    Invoke-Checked $Uv @('venv', '--quiet', '--relocatable', '--python', $basePython, $new)
    $py = Join-Path $new 'Scripts\python.exe'
    Invoke-Checked $Uv (@('pip', 'sync', '--quiet', '--compile-bytecode', '--python', $py, '--require-hashes') + $sourceArgs + @($lock))
    Invoke-Checked $Uv @('pip', 'install', '--quiet', '--compile-bytecode', '--python', $py, '--no-deps', '--offline', '--no-index', $wheel.FullName)
    Invoke-Checked $Uv @('pip', 'check', '--quiet', '--python', $py)
    Invoke-Checked $py @('-c', 'import engine, torch, transformers, peft, accelerate, datasets, PySide6.QtWidgets')
    $lockHash = (Get-FileHash -Algorithm SHA256 $lock).Hash.ToLower()
    $info = @(
        '# written by bootstrap.ps1; read by finetune-studio --self-check',
        "VERSION=$(Quote-Value $version)",
        "VARIANT=$(Quote-Value $Variant)",
        "VARIANT_REASON=$(Quote-Value $reason)",
        "LOCK=$(Quote-Value (Split-Path -Leaf $lock))",
        "LOCK_SHA256=$(Quote-Value $lockHash)",
        "MODE=$(Quote-Value $mode)",
        "INSTALLED=$(Quote-Value ((Get-Date).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ssZ')))",
        "SCOPE=$(Quote-Value 'windows')"
    )
    Set-Content -Path (Join-Path $new 'finetune-studio-install.env') -Value $info -Encoding ASCII

    if (Test-Path $current) { Rename-Item -Path $current -NewName 'venv.old' }
    Rename-Item -Path $new -NewName 'venv'
    if (Test-Path $old) { Remove-Item -Recurse -Force $old }
    $seconds = [int]((Get-Date) - $started).TotalSeconds
    Write-Host "environment ready in $seconds s: $current ($mode)"
} catch {
    Write-Host "bootstrap.ps1: error: $($_.Exception.Message)"
    if (Test-Path (Join-Path $App 'venv.new')) { Remove-Item -Recurse -Force (Join-Path $App 'venv.new') }
    $exitCode = 1
} finally {
    Stop-Transcript | Out-Null
}
exit $exitCode
