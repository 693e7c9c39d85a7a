//! The exporter as a Windows service: registered with the service control
//! manager (start type automatic, LocalSystem, the exporter's arguments
//! kept in its command line), and the entry point the SCM starts, which
//! reports running, serves, and on stop or shutdown says how long it may
//! take (the wait hint) and stops within it.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use windows_service::service::{
    ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

pub use crate::discover::service::{STOP_WAIT_HINT, Serve};

fn io_error(e: windows_service::Error) -> io::Error {
    match e {
        windows_service::Error::Winapi(e) => e,
        e => io::Error::other(e.to_string()),
    }
}

/// Registers `name` to run `exe` with `arguments`, started at boot when
/// `automatic`, else when asked.
pub fn install(name: &str, exe: &Path, arguments: &[OsString], automatic: bool) -> io::Result<()> {
    let manager = ServiceManager::local_computer(
        None::<&OsStr>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .map_err(io_error)?;
    let info = ServiceInfo {
        name: name.into(),
        display_name: format!("portwarden ({name})").into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: match automatic {
            true => ServiceStartType::AutoStart,
            false => ServiceStartType::OnDemand,
        },
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_path_buf(),
        launch_arguments: arguments.to_vec(),
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = manager
        .create_service(&info, ServiceAccess::CHANGE_CONFIG)
        .map_err(io_error)?;
    service
        .set_description(
            "Every listening TCP and UDP port, its owner and whether it answers, for Prometheus",
        )
        .map_err(io_error)
}

/// Stops `name` (waiting up to its wait hint) and removes it.
pub fn uninstall(name: &str) -> io::Result<()> {
    let manager = ServiceManager::local_computer(None::<&OsStr>, ServiceManagerAccess::CONNECT)
        .map_err(io_error)?;
    let service = manager
        .open_service(
            name,
            ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
        )
        .map_err(io_error)?;
    let status = service.query_status().map_err(io_error)?;
    if status.current_state != ServiceState::Stopped {
        service.stop().map_err(io_error)?;
        let deadline = Instant::now() + STOP_WAIT_HINT + Duration::from_secs(5);
        while service.query_status().map_err(io_error)?.current_state != ServiceState::Stopped {
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{name} did not stop within its wait hint; not removed"),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    service.delete().map_err(io_error)
}

/// The exporter to run, and the service's name, handed to the entry point
/// the SCM calls on a thread of its own.
static SERVE: Mutex<Option<(String, Serve)>> = Mutex::new(None);
/// What serving ended with.
static ENDED: OnceLock<Result<(), String>> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

/// Connects to the SCM as service `name` and serves until it says stop.
/// Returns when the service has stopped; an error when this process was
/// not started by the SCM, or when serving failed.
pub fn run(name: &str, serve: Serve) -> io::Result<()> {
    *SERVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((name.to_string(), serve));
    service_dispatcher::start(name, ffi_service_main).map_err(io_error)?;
    match ENDED.get() {
        Some(Ok(())) | None => Ok(()),
        Some(Err(e)) => Err(io::Error::other(e.clone())),
    }
}

fn service_main(_arguments: Vec<OsString>) {
    let taken = SERVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some((name, serve)) = taken else { return };
    let _ = ENDED.set(serve_as_service(&name, serve));
}

fn status(state: ServiceState, exit: ServiceExitCode, wait_hint: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: match state {
            ServiceState::Running => ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            _ => ServiceControlAccept::empty(),
        },
        exit_code: exit,
        checkpoint: 0,
        wait_hint,
        process_id: None,
    }
}

fn serve_as_service(name: &str, serve: Serve) -> Result<(), String> {
    let handle: std::sync::Arc<OnceLock<service_control_handler::ServiceStatusHandle>> =
        Default::default();
    let in_handler = std::sync::Arc::clone(&handle);
    let registered = service_control_handler::register(name, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            if let Some(h) = in_handler.get() {
                let pending = status(
                    ServiceState::StopPending,
                    ServiceExitCode::Win32(0),
                    STOP_WAIT_HINT,
                );
                let _ = h.set_service_status(pending);
            }
            super::super::os::request_stop();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })
    .map_err(|e| e.to_string())?;
    let _ = handle.set(registered);
    let running = status(
        ServiceState::Running,
        ServiceExitCode::Win32(0),
        Duration::ZERO,
    );
    registered
        .set_service_status(running)
        .map_err(|e| e.to_string())?;
    let ended = serve();
    let exit = match &ended {
        Ok(()) => ServiceExitCode::Win32(0),
        Err(_) => ServiceExitCode::ServiceSpecific(1),
    };
    let _ = registered.set_service_status(status(ServiceState::Stopped, exit, Duration::ZERO));
    ended
}
