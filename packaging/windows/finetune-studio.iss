; Finetune Studio: Windows installer (Inno Setup 6). Build on Windows from the folder that
; `make -C packaging package` stages as packaging/out/windows:
;     iscc /DAppVersion=0.1.0 finetune-studio.iss
; The installer is small (the app wheel, the locks, uv.exe, bootstrap.ps1). After copying them it
; runs bootstrap.ps1, which detects the NVIDIA driver, picks the torch build and builds the app's
; Python environment in {app}\venv from the hash-pinned lock, from PyPI/download.pytorch.org or,
; offline, from a wheelhouse folder placed beside Setup.exe (wheelhouse\windows-<variant>).
;
; Silent deployment (admin, every user):   Setup.exe /VERYSILENT /SUPPRESSMSGBOXES /VARIANT=auto
; Per-user install without admin rights:   Setup.exe /CURRENTUSER
; Options: /VARIANT=auto|cpu|cu126|cu130   /WHEELHOUSE=<folder>   (default: {src}\wheelhouse)
; Uninstall keeps runs, adapters, datasets and settings (%LOCALAPPDATA%\finetune-studio) unless
; the user says otherwise, or `unins000.exe /VERYSILENT /PURGE` is used.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Finetune Studio"

[Setup]
AppId={{A2C6782D-6D86-4AA7-BD4B-C882F5FF3A01}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=Finetune Studio
DefaultDirName={autopf}\Finetune Studio
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; Per machine by default (lab admins); /CURRENTUSER or the dialog switches to a per-user install.
PrivilegesRequired=admin
PrivilegesRequiredOverridesAllowed=dialog commandline
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputBaseFilename=finetune-studio-{#AppVersion}-windows-setup
SetupIconFile=finetune-studio.ico
UninstallDisplayIcon={app}\finetune-studio.ico
Compression=lzma2
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes
SetupLogging=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "bootstrap.ps1"; DestDir: "{app}"; Flags: ignoreversion
Source: "torch_variant.py"; DestDir: "{app}"; Flags: ignoreversion
Source: "uv.exe"; DestDir: "{app}"; Flags: ignoreversion
Source: "finetune-studio.ico"; DestDir: "{app}"; Flags: ignoreversion
Source: "dist\finetune_studio-*.whl"; DestDir: "{app}\dist"; Flags: ignoreversion
Source: "locks\windows-*.txt"; DestDir: "{app}\locks"; Flags: ignoreversion

[InstallDelete]
; An upgrade must not keep an older version's wheel next to the new one.
Type: files; Name: "{app}\dist\finetune_studio-*.whl"

[Icons]
; pythonw: no console window. `python -m gui` is what `finetune-studio` with no command runs.
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\venv\Scripts\pythonw.exe"; Parameters: "-m gui"; WorkingDir: "{userdocs}"; IconFilename: "{app}\finetune-studio.ico"
; cmd /k keeps the console open so the report stays readable.
Name: "{autoprograms}\{#AppName} self-check"; Filename: "{cmd}"; Parameters: "/k """"{app}\venv\Scripts\finetune-studio.exe"" --self-check"""; WorkingDir: "{userdocs}"; IconFilename: "{app}\finetune-studio.ico"
Name: "{autoprograms}\{#AppName} repair"; Filename: "powershell.exe"; Parameters: "-NoProfile -ExecutionPolicy Bypass -File ""{app}\bootstrap.ps1"""; IconFilename: "{app}\finetune-studio.ico"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\venv\Scripts\pythonw.exe"; Parameters: "-m gui"; WorkingDir: "{userdocs}"; IconFilename: "{app}\finetune-studio.ico"; Tasks: desktopicon

[UninstallDelete]
; Built by bootstrap.ps1, so Inno Setup does not track these files itself.
Type: filesandordirs; Name: "{app}\venv"
Type: filesandordirs; Name: "{app}\venv.new"
Type: filesandordirs; Name: "{app}\venv.old"
Type: filesandordirs; Name: "{app}\python"
Type: files; Name: "{app}\bootstrap.log"

[Code]
function HasSwitch(Name: String): Boolean;
var
  I: Integer;
begin
  Result := False;
  for I := 1 to ParamCount do
    if CompareText(ParamStr(I), '/' + Name) = 0 then
      Result := True;
end;

function BootstrapParams(): String;
var
  Wheelhouse: String;
begin
  Result := '-NoProfile -ExecutionPolicy Bypass -File "' + ExpandConstant('{app}\bootstrap.ps1') + '"'
    + ' -Variant ' + ExpandConstant('{param:VARIANT|auto}');
  Wheelhouse := ExpandConstant('{param:WHEELHOUSE|{src}\wheelhouse}');
  if DirExists(Wheelhouse) then
    Result := Result + ' -Wheelhouse "' + Wheelhouse + '"';
end;

procedure CurStepChanged(CurStep: TSetupStep);
var
  ResultCode: Integer;
begin
  if CurStep = ssPostInstall then
  begin
    WizardForm.StatusLabel.Caption := 'Building the Python environment (detecting the GPU, installing torch)...';
    if not Exec('powershell.exe', BootstrapParams(), ExpandConstant('{app}'), SW_HIDE,
                ewWaitUntilTerminated, ResultCode) or (ResultCode <> 0) then
    begin
      Log('bootstrap.ps1 failed with exit code ' + IntToStr(ResultCode));
      SuppressibleMsgBox('Finetune Studio''s Python environment could not be built (exit code '
        + IntToStr(ResultCode) + ').' + #13#10 + 'See ' + ExpandConstant('{app}\bootstrap.log')
        + ', fix the cause, then run "Finetune Studio repair" from the Start menu.',
        mbError, MB_OK, IDOK);
    end;
  end;
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
var
  DataDir: String;
begin
  if CurUninstallStep = usPostUninstall then
  begin
    { platformdirs' user_data_dir("finetune-studio", appauthor=False) on Windows; settings live there too }
    DataDir := ExpandConstant('{localappdata}\finetune-studio');
    if not DirExists(DataDir) then
      Exit;
    if UninstallSilent then
    begin
      if HasSwitch('PURGE') then
        DelTree(DataDir, True, True, True);
    end
    else if MsgBox('Also delete your runs, adapters, datasets and settings in ' + DataDir + '?'
                   + #13#10 + 'Choose No to keep them for a later install.',
                   mbConfirmation, MB_YESNO or MB_DEFBUTTON2) = IDYES then
      DelTree(DataDir, True, True, True);
  end;
end;
