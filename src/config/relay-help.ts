/** `tcpsplit relay --help`. Defaults quoted here come from DEFAULTS, so they cannot drift. */
import { DEFAULTS } from './relay-config.js';

function seconds(ms: number): string {
  return ms % 60_000 === 0 ? `${ms / 60_000}m` : `${ms / 1000}s`;
}

export const RELAY_HELP = `Usage: tcpsplit relay [options]

Runs a split-TCP relay. A connection goes client -> R_C -> R_S -> server: the
client-side relay R_C accepts the client's TCP connection and opens the next leg
to a peer relay R_S (or straight to the target); R_S opens the last leg to the
server. Each leg is its own TCP connection with its own short control loop.

Listeners
  -L, --forward [bind:]port:host:hostport
        Listen on bind:port (bind defaults to 127.0.0.1) and carry each connection
        to host:hostport, like ssh -L. Repeatable. IPv6 goes in brackets:
        -L [::1]:8080:[2001:db8::1]:80. Port 0 picks a free port.
  --accept [bind:]port
        Accept connections from peer relays (bind defaults to 0.0.0.0). Needs a key
        unless --insecure is given.
  --metrics [bind:]port
        Serve Prometheus metrics at /metrics (bind defaults to 127.0.0.1).
  --control PATH|off
        The control API's unix socket, mode 0600 (default /run/tcpsplit/control.sock;
        a default path another relay holds gives a warning and no API; a path given
        here fails the start instead). Talk to it with tcpsplit ctl (docs/control.md).

Transparent interception (docs/intercept.md; needs CAP_NET_ADMIN)
  --intercept CIDR[:PORT[-PORT]]
        Divert TCP connections routed through this host to destinations in CIDR
        (optionally only those ports) to the relay, which carries each on to its
        original destination: through a peer if --route says so, else direct.
        Repeatable; IPv4 and IPv6 (fd00:7473:3::/64:22). The rules live in this
        relay's own nftables table, tcpsplit_INSTANCE, made at start and removed at
        exit (and, after a crash, at the next start). Only forwarded traffic
        (prerouting) is diverted: the relay's own connections never are.
  --intercept-mode redirect|tproxy
        redirect (default): nftables REDIRECT; the original destination comes from
        conntrack (SO_ORIGINAL_DST). tproxy: TPROXY with a transparent listener, a
        fwmark rule and a local route; the destination address is left untouched.
  --intercept-iface NAME
        Only connections arriving on this interface.
  --intercept-listen [bind:]port
        Where diverted connections arrive (default [::]:7080, dual stack).
  --instance NAME
        Names the nftables table (tcpsplit_NAME), of [a-z0-9_]; default p<port> of
        --intercept-listen. Two relays on one host need different names.

Next hops
  --peer NAME=HOST:PORT
        A peer relay, NAME of [a-z0-9_-]. Repeatable. Needs a key unless --insecure.
  --route CIDR=NAME | CIDR=direct
        Send connections for targets in CIDR through peer NAME, or straight to the
        target. Repeatable; the longest prefix wins; anything unmatched goes direct.
        0.0.0.0/0=NAME and ::/0=NAME send everything through NAME. A relay routes
        what it accepts from a peer by its own table, so chains of relays work.

Security
  --key-file FILE
        The pre-shared key that authenticates relay-to-relay connections: random
        binary bytes (head -c 32 /dev/urandom), or hex or base64 text (openssl rand
        -hex 32), at least 16 bytes once decoded. A file of printable text is read
        as hex or base64; other text (a passphrase) is refused. Without --key-file,
        the file named by TCPSPLIT_KEY_FILE is used, else the hex or base64 key in
        TCPSPLIT_KEY. Keep it chmod 600: a key file every user can read is refused,
        a group-readable one gets a warning. Every relay in a chain needs the same
        key.
  --insecure
        Allow --accept and --peer without a key. For labs only: anyone who can reach
        --accept can then use this relay.
  --allow CIDR, --deny CIDR
        What this relay will connect to on a peer's behalf. Repeatable. Built in, it
        denies loopback (127.0.0.0/8, ::1), link-local (169.254.0.0/16, fe80::/10,
        which hold cloud metadata services), other metadata addresses, 0.0.0.0/8,
        ::, multicast, broadcast and this host's own addresses. The longest matching
        prefix decides; at equal length your rule beats a built-in one and --deny
        beats --allow. Once any --allow is given, only what is allowed is reachable.
        IPv4-mapped IPv6 (::ffff:a.b.c.d) is checked as IPv4. Examples:
        --allow 10.0.0.0/8 (only 10/8, minus this host); --allow 127.0.0.1/32 (let a
        test relay reach 127.0.0.1); --allow 127.0.0.0/8 (all of loopback).
        One CIDR per option, with its prefix length: a bare address is refused.
        With --accept and no --allow, a peer holding the key can reach anything
        but the built-in denials; --check and the start-up log warn about it.

Timeouts (500ms, 10s, 5m, 1h: the unit is required)
  --connect-timeout DUR   give up on a next leg's connect
                          (default ${seconds(DEFAULTS.connectTimeoutMs)})
  --idle-timeout DUR      close a connection with no bytes either way
                          (default ${seconds(DEFAULTS.idleTimeoutMs)}; 0 = never)
  --header-timeout DUR    a peer must send its complete header within this of
                          being accepted (default ${seconds(DEFAULTS.headerTimeoutMs)}). A relay writes its
                          header the moment its leg connects, so it arrives within
                          one round trip; the default leaves room for two lost
                          segments on a 300 ms path (RTO 0.9 s, then 1.8 s)
  --drain-timeout DUR     on SIGTERM, wait this long for open connections
                          (default ${seconds(DEFAULTS.drainTimeoutMs)}; 0 = close them at once)
  --max-connections N     split connections open at once; beyond it new ones are
                          reset at accept and counted (default ${DEFAULTS.maxConnections}). Each takes two
                          file descriptors: the relay raises its open-files soft limit
                          to the hard limit and, with a warning, lowers N to fit.
                          At most a quarter may be peer connections still waiting for
                          their header; when all those slots are taken, the oldest
                          waiting one is reset to make room for the newcomer
  --max-pending-per-source N
                          peer connections one source address (an IPv6 /64) may have
                          waiting for their header; past it, that source's oldest
                          waiting one is reset (default ${DEFAULTS.maxPendingPerSource})
  --keepalive DUR         TCP keepalive on relay-to-relay legs
                          (default ${seconds(DEFAULTS.keepaliveMs)}; 0 = off)
  --max-clock-skew DUR    how far a header's timestamp may be from this clock
                          (default ${seconds(DEFAULTS.maxClockSkewMs)}; changing it needs a restart)

Workers (restart-only: a reload that changes them is refused)
  --workers N             worker threads, started in advance, 1 to 256 (default: the
                          number of CPUs, os.availableParallelism()). Each has its own
                          listener on every -L and --accept port (SO_REUSEPORT), and an
                          eBPF program sends each connection to the worker that one
                          function of the client's address and port names, so a client's
                          connections spread evenly. Workers share the replay guard and
                          the --max-connections count; a worker that dies resets only its
                          own connections and is replaced within a second. Metrics,
                          signals and the log stay one relay's
  --backlog N             each listener's queue of connections not yet accepted
                          (default ${DEFAULTS.backlog}, which holds a burst of 2,000 at once;
                          Node's own 511 dropped some). The kernel caps it at
                          net.core.somaxconn; the relay warns when N is larger
  --early-syn on|off      start the next leg when the client's SYN arrives, not at
                          accept (NFQUEUE; -L and --intercept listeners; default on;
                          needs CAP_NET_ADMIN and iptables, else a warning and off).
                          Saves a client round trip per connection. A reload
                          switches it

Pool and Turbo-Start (relays with a --peer; both on by default; a reload switches them)
  --pool on|off           keep pre-established, authenticated connections to each peer
                          in every worker, so a client's request leaves with no
                          handshake to the peer (docs/pool.md)
  --pool-low N            ready connections per peer and worker (default ${DEFAULTS.poolLow})
  --pool-high N           most connections per peer and worker (default ${DEFAULTS.poolHigh})
  --pool-peer NAME=SETTING,...
                          one peer's pool, unlike the rest: low:N, high:N,
                          max-idle:DURATION, pool:on|off (repeatable, one per peer;
                          e.g. --pool-peer rs2=low:1,high:4 --pool-peer backup=pool:off)
  --pool-max-idle DUR     a pooled connection older than this is closed unused
                          (default ${seconds(DEFAULTS.poolMaxIdleMs)})
  --turbo on|off          large initial windows (per-peer routes) and buffers on
                          relay-to-relay legs only; needs CAP_NET_ADMIN for the routes
  --turbo-initcwnd N      initcwnd of the routes to peers, segments (default ${DEFAULTS.turboInitCwnd})
  --turbo-initrwnd N      initrwnd of the routes to peers, segments (default ${DEFAULTS.turboInitRwnd})

Other
  --log-level LEVEL       fatal, error, warn, info, debug, trace or silent
                          (default ${DEFAULTS.logLevel})
  --config FILE           read options from a YAML file (see below)
  --check                 load and validate the config and key, print what the relay
                          would do (each forward: via which peer, or direct) and any
                          warnings, and exit (0 when valid, 2 when not); binds nothing
  -h, --help              this text
  Options take --opt value or --opt=value.

Config file
  Keys are the long option names (forward for -L). Flags given as well replace the
  file's value for single-valued options and add to the file's lists for the
  repeatable ones (-L, --peer, --route, --allow, --deny). A relative key-file is
  relative to the config file.

Signals
  SIGTERM, SIGINT  stop accepting, drain for --drain-timeout, exit
  SIGHUP           re-read the config file and the key; open connections keep their
                   config. Every option applies live (listeners, metrics, log level,
                   early SYN, pool and Turbo-Start included) except --max-clock-skew,
                   --workers, --backlog, --intercept and --control: a reload that
                   changes one is refused whole (TCPSPLIT_ERR_RESTART_REQUIRED). Any
                   error keeps the running config. One log line lists what changed.
                   Run-time changes made with tcpsplit ctl set are dropped.
  SIGUSR1          log a status line (open connections, listeners); it does not open
                   Node's inspector

Examples
  Make a key, then copy the same file to every relay:
    head -c 32 /dev/urandom > relay.key; chmod 600 relay.key

  Client side (R_C): local port 8080 reaches the server 198.18.5.10:80 through
  the peer relay rs, as does every target in 198.18.0.0/15; others go direct:
    tcpsplit relay -L 8080:198.18.5.10:80 --peer rs=198.18.2.2:7000 \\
      --route 198.18.0.0/15=rs --key-file relay.key

  Server side (R_S): accept peers on port 7000 and connect only into 10.0.0.0/8:
    tcpsplit relay --accept 7000 --key-file /etc/tcpsplit/relay.key \\
      --allow 10.0.0.0/8

  The client side as a YAML file, run with: tcpsplit relay --config rc.yaml
    forward:
      - 8080:198.18.5.10:80
      - {listen: "0.0.0.0:8443", target: "example.com:443"}
    peer: {rs: "198.18.2.2:7000"}
    route: {"198.18.0.0/15": rs}
    key-file: relay.key
    connect-timeout: 5s
`;
