//! Test fixtures for the broker-identity tests (feature `testing`, for dev-dependencies only): uniquely named
//! RabbitMQ users in their own vhost on the local broker, and a private nats-server with per-agent users. Both
//! are removed when dropped. Never used by production code.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{BusConfig, Principal, Transport, identity};

/// A fresh namespace name, `t-<12 hex>`.
pub fn namespace() -> String {
    format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn password() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn base(namespace: &str, transport: Transport) -> BusConfig {
    let mut c = BusConfig::default().with_transport(transport);
    c.namespace = namespace.to_owned();
    c.inbox_expiry = Some(Duration::from_secs(120));
    c.ack_wait = Duration::from_secs(1);
    c.reconnect_max_backoff = Duration::from_millis(500);
    c.verify_sender = true;
    c
}

/// Per-agent users of a fresh namespace in a fresh vhost of the local RabbitMQ (via `rabbitmqctl`).
pub struct RabbitUsers {
    /// The namespace (and vhost) name.
    pub namespace: String,
    users: Vec<(Principal, String)>,
    port: u16,
}

impl RabbitUsers {
    /// Creates the vhost and one user per principal with [`identity::amqp_permissions`].
    pub fn create(principals: &[Principal]) -> Result<Self, String> {
        let namespace = namespace();
        run(Command::new("rabbitmqctl").args(["-q", "add_vhost", &namespace]))?;
        let mut me = Self {
            namespace,
            users: Vec::new(),
            port: 5672,
        };
        for p in principals {
            let user = p.user(&me.namespace);
            let pw = password();
            run(Command::new("rabbitmqctl").args(["-q", "add_user", &user, &pw]))?;
            me.users.push((p.clone(), pw));
            let (c, w, r) = identity::amqp_permissions(&me.namespace, p);
            run(Command::new("rabbitmqctl").args([
                "-q",
                "set_permissions",
                "-p",
                &me.namespace,
                &user,
                &c,
                &w,
                &r,
            ]))?;
        }
        Ok(me)
    }

    /// The bus config of `principal` (sender verification on).
    pub fn config(&self, principal: &Principal) -> BusConfig {
        self.config_at(principal, "amqp", "127.0.0.1", self.port)
    }

    /// The same, for another scheme/host/port (e.g. `amqps` through a TLS front).
    pub fn config_at(&self, principal: &Principal, scheme: &str, host: &str, port: u16) -> BusConfig {
        let pw = self.password(principal);
        let mut c = base(&self.namespace, Transport::Amqp);
        c.amqp_url = format!(
            "{scheme}://{}:{pw}@{host}:{port}/{}",
            principal.user(&self.namespace),
            self.namespace
        );
        c
    }

    /// The password of `principal`.
    pub fn password(&self, principal: &Principal) -> String {
        self.users
            .iter()
            .find(|(p, _)| p == principal)
            .map(|(_, pw)| pw.clone())
            .unwrap_or_else(|| "no-such-user".into())
    }
}

impl Drop for RabbitUsers {
    fn drop(&mut self) {
        for (p, _) in &self.users {
            let _outcome =
                run(Command::new("rabbitmqctl").args(["-q", "delete_user", &p.user(&self.namespace)]));
        }
        let _outcome = run(Command::new("rabbitmqctl").args(["-q", "delete_vhost", &self.namespace]));
    }
}

/// A private nats-server (binary `/usr/sbin/nats-server`, or `$NATS_SERVER`) on a free loopback port, with
/// JetStream and the per-agent users of a fresh namespace. Killed and its files removed on drop.
pub struct NatsServer {
    /// The namespace.
    pub namespace: String,
    /// The client port.
    pub port: u16,
    /// The server's directory (config, JetStream store).
    pub dir: PathBuf,
    users: Vec<(Principal, String)>,
    child: Child,
}

impl NatsServer {
    /// Starts the server; `extra` is appended to the config (e.g. a `tls { ... }` block).
    pub fn start(principals: &[Principal], extra: &str) -> Result<Self, String> {
        let namespace = namespace();
        let dir = std::env::temp_dir().join(format!("acv-nats-{namespace}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let users: Vec<(Principal, String)> = principals.iter().map(|p| (p.clone(), password())).collect();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let conf = format!(
            "host: 127.0.0.1\nport: {port}\njetstream {{ store_dir: \"{}\" }}\n{}\n{extra}\n",
            dir.join("js").display(),
            identity::nats_authorization(&namespace, &users)
        );
        let conf_path = dir.join("nats.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let bin = std::env::var("NATS_SERVER").unwrap_or_else(|_| "/usr/sbin/nats-server".into());
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e}"))?;
        let server = Self {
            namespace,
            port,
            dir,
            users,
            child,
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("nats-server did not open its port within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The bus config of `principal` (sender verification on).
    pub fn config(&self, principal: &Principal) -> BusConfig {
        let mut c = base(&self.namespace, Transport::Nats);
        c.nats_url = format!("nats://127.0.0.1:{}", self.port);
        c.nats_user = Some(principal.user(&self.namespace));
        c.nats_password = Some(acv_core::env::Secret::new(self.password(principal)));
        c
    }

    /// The password of `principal`.
    pub fn password(&self, principal: &Principal) -> String {
        self.users
            .iter()
            .find(|(p, _)| p == principal)
            .map(|(_, pw)| pw.clone())
            .unwrap_or_else(|| "no-such-user".into())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _outcome = self.child.kill();
        let _outcome = self.child.wait();
        let _outcome = std::fs::remove_dir_all(&self.dir);
    }
}
