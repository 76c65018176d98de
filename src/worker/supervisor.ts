/**
 * The supervisor: one relay to the outside, N worker threads inside (issue 7 §1, the
 * paper's thread pool as Node does it).
 *
 * Why threads and not processes (measured in docs/workers.md): one fd table, so the
 * supervisor's sys layer makes every listener fd (SO_REUSEPORT + the SK_REUSEPORT
 * steering program, keyed worker k -> its fd) and a worker adopts it by number; shared
 * memory (SharedArrayBuffer + Atomics) for what must hold across workers (the replay
 * guard, which is also the loop cut-off, and the connection count); and an idle worker
 * thread costs a fraction of a process.
 *
 * Workers are started in advance (nothing is created per connection). A worker that
 * dies loses only its own connections, reset by the kernel as its handles close (legs
 * carry linger {1, 0}); the supervisor frees what it held in shared memory and starts a
 * replacement at once, with fresh listener fds in the same steering slots. Signals and
 * metrics are the supervisor's: it broadcasts reload and drain, sums the workers'
 * metrics snapshots on one endpoint, and adds up their status.
 *
 * The worker count is fixed per run (--workers is restart-only), but nothing here
 * assumes it beyond the slot array and the steering map's size: growing means a larger
 * map and program swapped into each group, and new slots started like replacements.
 */
import { Worker } from 'node:worker_threads';
import type { AddressInfo } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { poolOf, type RelayConfig } from '../config/relay-config.js';
import { describeChanges, diffConfigs, RESTART_ONLY } from '../config/config-diff.js';
import type { Logger } from '../observe/logger.js';
import { aggregate, countedOnly, labelsFor, Metrics, sumSnapshots, type MetricsSnapshot } from '../observe/metrics.js';
import { openFds } from '../observe/open-fds.js';
import { closeHttpServer, serverAddress, startMetricsServer } from '../observe/metrics-server.js';
import { SharedReplayGuard } from '../protocol/shared-replay-guard.js';
import { SharedConnectionSlots } from '../relay/connection-slots.js';
import { QueueProbe } from '../intercept/queue-probe.js';
import { errorCode, FdLimitError, RestartRequiredError, WorkerExitError } from '../errors.js';
import { EarlySyn, ruleGroups } from '../intercept/early-syn.js';
import { FDS_PER_CONNECTION, planFdBudget } from '../relay/fd-budget.js';
import { FdRequestError, ListenerFds } from './listener-fds.js';
import { TurboStart } from '../turbo/turbo-start.js';
import { mergeView, type SupervisorPart, type WorkerViewPart } from '../control/worker-view.js';
import type { RelayView, ViewSource } from '../control/relay-view.js';
import { formatEndpoint } from '../config/load-config.js';
import { fromWire, toWire, type Addresses, type FromWorker, type ToWorker, type WorkerData, type WorkerSnapshot } from './messages.js';

const WORKER_ENTRY = new URL('./worker-main.js', import.meta.url);

/** A replacement that itself dies within this long waits this long before the next try (a crash loop must not spin). */
const RESTART_BACKOFF_MS = 1000;
/** A worker that does not answer a metrics or status request within this is left out of the sum. */
const SNAPSHOT_TIMEOUT_MS = 2000;

export interface SupervisorStatus {
  readonly open: number;
  readonly workers: number;
  /** Workers that answered within the timeout (a restarting one does not). */
  readonly answered: number;
  /** Open connections, and connections accepted since the worker started, per worker. */
  readonly perWorker: readonly { readonly index: number; readonly threadId: number; readonly open: number; readonly accepted: number }[];
}

export interface SupervisorOptions {
  readonly logger: Logger;
}

interface Slot {
  readonly index: number;
  worker: Worker;
  threadId: number;
  ready: boolean;
  startedAt: number;
  /** Whether this incarnation replaced one that had died within RESTART_BACKOFF_MS of starting. */
  quickDeaths: number;
  /** The backoff the last replacement of this slot waited before it started (0: at once). */
  replaceDelayMs: number;
  /** The last metrics this worker sent: what it had counted, should it die before the next scrape. */
  lastMetrics: MetricsSnapshot | undefined;
  /** The last view part it sent (for the same reason: its totals outlive it). */
  lastView: WorkerViewPart | undefined;
  /** The config this worker runs (what it started with, or its last reload). */
  config: RelayConfig;
  /** Requests sent to this worker, by id. */
  readonly pending: Map<number, { resolve: (v: WorkerSnapshot | undefined) => void; reject: (e: Error) => void }>;
}

export class Supervisor implements ViewSource {
  readonly workers: number;
  readonly #logger: Logger;
  #config: RelayConfig;
  /** What a worker started now starts with: #config, or the config a reload is handing out. */
  #spawnConfig: RelayConfig;
  readonly #replay: SharedReplayGuard;
  readonly #slots: SharedConnectionSlots;
  readonly #fds: ListenerFds;
  readonly #workerSlots: Slot[] = [];
  readonly #metrics = new Metrics();
  readonly #reloadCounter = this.#metrics.counter('tcpsplit_config_reloads_total', 'Config reloads (SIGHUP, and changes through the control API), by result (ok, error).', ['result']);
  readonly #restartCounter = this.#metrics.counter('tcpsplit_worker_restarts_total', 'Worker threads that died and were replaced.');
  #metricsServer: HttpServer | undefined;
  #addresses: Addresses = { forward: [], accept: undefined, intercept: undefined };
  #reloads: Promise<void> = Promise.resolve();
  #stopping = false;
  #onDraining: (open: number) => void = () => undefined;
  /** Until every worker first listens, a dying one fails the start instead of being replaced. */
  #started = false;
  #nextId = 1;
  /**
   * Counters of workers that died, as last scraped, so the relay's sums do not go
   * backwards when a worker is replaced (what it counted since the last scrape is lost).
   */
  #retired: Promise<MetricsSnapshot> = Promise.resolve([]);
  /** The view's totals of workers that died (their open connections were reset: failed). */
  #retiredView: SupervisorPart['retired'] = { closed: 0, failed: 0, bytes: { up: 0, down: 0 } };
  readonly #startedAt = Date.now();
  /** The round of snapshot requests in flight, shared by its callers (#snapshots). */
  #inflight: Promise<WorkerSnapshot[]> | undefined;
  /** Early SYN's rules and one SYN queue reader per worker (src/intercept/early-syn.ts); undefined: off. */
  #earlySyn: EarlySyn | undefined;
  /** Measures the queue's added latency while early SYN runs (src/intercept/queue-probe.ts). */
  #queueProbe: QueueProbe | undefined;
  readonly #queueDelay = this.#metrics.histogram('tcpsplit_early_syn_queue_delay_seconds',
    'What the early-SYN queue adds to a SYN: a loopback probe\'s handshake through the queue less one around it, every 10 s.', QUEUE_DELAY_BUCKETS);
  /** What early SYN was last started for (its rule groups), so a reload restarts it only when they change. */
  #earlySynFor: string | undefined;
  /** The descriptor budget last logged, so a reload that leaves it alone logs nothing. */
  #fdBudgetLogged: string | undefined;
  /** Turbo-Start's per-peer routes: once per relay, not per worker. */
  readonly #turbo: TurboStart;

  private constructor(config: RelayConfig, options: SupervisorOptions) {
    this.workers = config.workers;
    this.#logger = options.logger;
    this.#config = config;
    this.#spawnConfig = config;
    this.#replay = new SharedReplayGuard({ maxClockSkewMs: config.maxClockSkewMs });
    this.#slots = new SharedConnectionSlots(config.workers);
    this.#fds = new ListenerFds(config.workers, config.backlog, options.logger);
    this.#metrics.gauge('tcpsplit_workers', 'Worker threads running now.', () => this.#workerSlots.filter((s) => s.ready).length);
    this.#metrics.gauge('tcpsplit_workers_configured', 'Worker threads the relay runs (--workers).', () => this.workers);
    this.#metrics.gauge('tcpsplit_open_fds', 'Open file descriptors of the relay process (all workers share one table).', openFds);
    this.#metrics.gauge('tcpsplit_early_syn_queue_packets', 'Packets the SYN queues gave a verdict (since start).', () => this.#earlySyn?.stats().packets ?? 0);
    this.#metrics.gauge('tcpsplit_early_syn_queue_overruns', 'SYNs the kernel let through unread because a queue was full (fail-open; since start).',
      () => this.#earlySyn?.stats().overruns ?? 0);
    this.#turbo = new TurboStart(options.logger);
    this.#turbo.register(this.#metrics);
  }

  /** Turbo-Start's routes as applied (or why not), per peer. */
  get turbo(): TurboStart {
    return this.#turbo;
  }

  /** Starts every worker and waits until all listen; on any failure stops them all and throws that error. */
  static async start(config: RelayConfig, options: SupervisorOptions): Promise<Supervisor> {
    // As Relay.start does (each worker repeats it, with the limit already raised): refuse
    // to start when the open-files limit leaves no room, before threads need descriptors
    // to load their modules.
    const listeners = config.forwards.length + (config.accept === undefined ? 0 : 1) + (config.metrics === undefined ? 0 : 1);
    const fd = planFdBudget(listeners * config.workers);
    if (fd.maxConnections < 1) {
      throw new FdLimitError(`the open-files limit (${fd.soft}, hard ${fd.hard}) leaves no room for a connection: ${fd.baseline} descriptors are taken; raise it (ulimit -n, LimitNOFILE=)`);
    }
    if (fd.soft > fd.softBefore) {
      options.logger.info({ event: 'fd-limit', from: fd.softBefore, to: fd.soft }, 'raised the open-files soft limit to the hard limit');
    }
    const supervisor = new Supervisor(config, options);
    // Before the workers: their pools' first connections should already take the routes.
    await supervisor.#turbo.start(config);
    try {
      const ready = Array.from({ length: config.workers }, (_, index) => supervisor.#spawn(index));
      const results = await Promise.allSettled(ready);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
      supervisor.#started = true;
      // Sized now, so that no accept runs uncapped while early SYN starts; logged once it has.
      supervisor.#sizeFdBudget(!config.earlySyn);
      if (config.earlySyn) {
        await supervisor.#startEarlySyn();
        // Again: early SYN's sockets and threads count, and its legs get their share.
        supervisor.#sizeFdBudget();
      }
      if (config.metrics !== undefined) {
        supervisor.#metricsServer = await startMetricsServer(supervisor, config.metrics.host, config.metrics.port, supervisor);
      }
    } catch (err) {
      supervisor.#stopping = true;
      supervisor.#stopQueueProbe();
      await supervisor.#earlySyn?.stop();
      supervisor.#earlySyn = undefined;
      await supervisor.#terminateAll();
      supervisor.#fds.closeAll();
      await supervisor.#turbo.stop();
      throw err;
    }
    options.logger.info({ event: 'workers', workers: config.workers, steering: supervisor.#fds.steering, backlog: config.backlog },
      `${config.workers} worker thread${config.workers === 1 ? '' : 's'} listening`);
    return supervisor;
  }

  /**
   * The open-files budget is one for the process: sized once every worker listens (their
   * listeners and threads counted), and shared as a cap on the relay-wide connection count.
   */
  #sizeFdBudget(log = true): void {
    const fd = planFdBudget(0, this.#earlySyn !== undefined, FDS_PER_CONNECTION * this.#slots.taken + this.#slots.early);
    this.#slots.setFdCap(fd.maxConnections, fd.maxEarlyLegs);
    const config = this.#config;
    const logged = `${fd.maxConnections}/${fd.maxEarlyLegs}/${config.maxConnections}`;
    if (!log || logged === this.#fdBudgetLogged) return;
    this.#fdBudgetLogged = logged;
    if (config.maxConnections > fd.maxConnections) {
      this.#logger.warn({
        event: 'fd-limit', code: FdLimitError.code, requested: config.maxConnections, maxConnections: fd.maxConnections,
        openFilesLimit: fd.soft, hardLimit: fd.hard, earlyLegs: fd.maxEarlyLegs,
      }, `--max-connections ${config.maxConnections} lowered to ${fd.maxConnections}: the open-files limit is ${fd.soft} (hard ${fd.hard}), `
        + `${fd.baseline} are taken and each split connection needs ${FDS_PER_CONNECTION}`
        + `${fd.maxEarlyLegs > 0 ? ` (${fd.maxEarlyLegs} more are kept for early-SYN legs)` : ''}; raise the limit (ulimit -n, LimitNOFILE=) to allow more`);
    }
  }

  /**
   * After a reload: a -L listener added, moved or removed changes what early SYN must
   * capture, so its rules and queues start again for the new set (SYNs in the gap, a few
   * milliseconds, connect after accept). Nothing to do when the set is unchanged, or when
   * early SYN is off.
   */
  async #syncEarlySyn(): Promise<void> {
    if (this.#stopping) return;
    if (!this.#config.earlySyn) {
      // Switched off at run time: SYNs pass untouched from here on; open connections stay.
      if (this.#earlySynFor === undefined) return;
      const old = this.#earlySyn;
      this.#earlySyn = undefined;
      this.#earlySynFor = undefined;
      this.#stopQueueProbe();
      await old?.stop();
      this.#sizeFdBudget();
      this.#logger.info({ event: 'early-syn', on: false }, 'early SYN off: next legs start after accept');
      return;
    }
    if (JSON.stringify(this.#ruleGroups()) === this.#earlySynFor) return;
    const old = this.#earlySyn;
    this.#earlySyn = undefined;
    this.#queueProbe?.stopSampling();
    await old?.stop();
    await this.#startEarlySyn();
    this.#sizeFdBudget();
  }

  /** What early SYN captures for the listeners bound now. */
  #ruleGroups(): ReturnType<typeof ruleGroups> {
    return ruleGroups({ forwards: this.#addresses.forward, intercept: this.#config.intercept });
  }

  /**
   * Early SYN, once every worker listens (the rules name the bound ports). When it cannot
   * run, one warning line with its code, and the relay runs without it.
   */
  async #startEarlySyn(): Promise<void> {
    const groups = this.#ruleGroups();
    this.#earlySynFor = JSON.stringify(groups);
    // Only -L and --intercept listeners know their target at the SYN: nothing to do for a peer listener alone.
    if (groups.length === 0) return;
    // The probe only measures: early SYN runs without it if it cannot listen.
    this.#queueProbe ??= await QueueProbe.listen((sample) => { this.#queueDelay(sample.addedUs / 1e6); }).catch((err: unknown) => {
      this.#logger.warn({ event: 'early-syn-probe', code: errorCode(err) }, `no queue-latency probe: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    });
    if (this.#draining()) {
      // A drain began while the probe listened (a reload's restart): nothing more starts.
      this.#stopQueueProbe();
      return;
    }
    try {
      const probe = this.#queueProbe;
      const early = await EarlySyn.start({
        workers: this.workers, forwards: this.#addresses.forward, intercept: this.#config.intercept, steering: this.#fds.steering,
        ...(probe === undefined ? {} : { probePort: probe.capturedPort }),
      });
      if (this.#draining()) {
        this.#stopQueueProbe();
        await early.stop();
        return;
      }
      this.#earlySyn = early;
      early.workerPorts.forEach((port, index) => {
        const slot = this.#workerSlots[index];
        // A worker still starting gets its events through retarget() once ready.
        if (slot?.ready === true) slot.worker.postMessage({ type: 'syn-events', port } satisfies ToWorker, [port]);
        else port.close();
      });
      if (early.orphansRemoved.length > 0) {
        this.#logger.info({ event: 'early-syn-stale', instances: early.orphansRemoved }, 'removed early-SYN rules left by relays no longer running');
      }
      probe?.start(QUEUE_PROBE_INTERVAL_MS);
      this.#logger.info({ event: 'early-syn', queues: `${early.queueBase}-${early.queueBase + this.workers - 1}` },
        'early SYN on: next legs start at the client\'s SYN');
    } catch (err) {
      this.#stopQueueProbe();
      this.#logger.warn({ event: 'early-syn', code: errorCode(err) }, err instanceof Error ? err.message : String(err));
    }
  }

  /** A drain has begun (read again after each await: a reload's restart may overlap one). */
  #draining(): boolean {
    return this.#stopping;
  }

  #stopQueueProbe(): void {
    this.#queueProbe?.close();
    this.#queueProbe = undefined;
  }

  /** For tests of fail-open: terminates worker `index`'s SYN queue reader as a crash would. */
  async killSynReader(index: number): Promise<void> {
    await this.#earlySyn?.killReader(index);
  }

  get earlySyn(): boolean {
    return this.#earlySyn !== undefined;
  }

  /** The config every worker runs now. */
  get config(): RelayConfig {
    return this.#config;
  }

  /** Bound addresses, as Relay.addresses() gives them: forwards in config order, accept, metrics. */
  addresses(): { forward: AddressInfo[]; accept: AddressInfo | undefined; intercept: AddressInfo | undefined; metrics: AddressInfo | undefined } {
    return { ...this.#addresses, metrics: this.#metricsServer === undefined ? undefined : serverAddress(this.#metricsServer) };
  }

  /** Open connections over all workers, how many workers answered, and each one's share. */
  async status(): Promise<SupervisorStatus> {
    const snapshots = await this.#snapshots();
    return {
      open: snapshots.reduce((n, s) => n + s.open, 0),
      workers: this.workers,
      answered: snapshots.length,
      perWorker: snapshots.map((s) => ({
        index: s.index, threadId: s.threadId, open: s.open,
        accepted: s.metrics.find((x) => x.name === 'tcpsplit_connections_accepted_total')?.values.reduce((n, v) => n + v.value, 0) ?? 0,
      })),
    };
  }

  /** The relay as a person or a script sees it: every worker's part, summed (src/control/worker-view.ts). */
  async view(): Promise<RelayView> {
    const snapshots = await this.#snapshots();
    const config = this.#config;
    const turbo = new Map(this.#turbo.reports().map((r) => [r.name, r.applied ? `initcwnd ${String(r.initCwnd)} initrwnd ${String(r.initRwnd)} on the route to ${r.peer}` : `not applied: ${r.reason ?? 'unknown'}`]));
    const listeners = [
      ...this.#addresses.forward.map((a, i) => {
        const f = config.forwards[i];
        return `-L ${formatEndpoint({ host: a.address, port: a.port })}${f === undefined ? '' : ` -> ${formatEndpoint(f.target)}`}`;
      }),
      ...(this.#addresses.accept === undefined ? [] : [`--accept ${formatEndpoint({ host: this.#addresses.accept.address, port: this.#addresses.accept.port })}`]),
      ...(this.#addresses.intercept === undefined ? [] : [`--intercept ${(config.intercept?.rules ?? []).map((r) => (r.ports === undefined ? r.cidr : `${r.cidr}:${String(r.ports.first)}-${String(r.ports.last)}`)).join(' ')} (${config.intercept?.mode ?? ''} to ${formatEndpoint({ host: this.#addresses.intercept.address, port: this.#addresses.intercept.port })})`]),
    ];
    return mergeView({
      startedAt: this.#startedAt,
      features: { earlySyn: this.#earlySyn !== undefined, pool: config.peers.some((p) => poolOf(config, p.name).pool), turbo: config.turbo && config.peers.length > 0 },
      logLevel: this.#logger.level,
      routes: config.routes.map((r) => ({ cidr: r.cidr, via: r.via })),
      listeners,
      peers: config.peers.map((p) => ({
        name: p.name, endpoint: formatEndpoint(p.endpoint),
        pool: (({ pool, low, high, maxIdleMs }) => ({ enabled: pool, low, high, maxIdleMs }))(poolOf(config, p.name)),
        turbo: turbo.get(p.name) ?? (config.turbo ? 'not applied yet' : 'off'),
      })),
      // As render(): a worker that died since it answered is in #retiredView, not here too;
      // one alive but too slow to answer shows its last part.
      workers: this.#workerSlots.map((s) => {
        const answered = snapshots.find((x) => x.index === s.index && x.threadId === s.threadId);
        return { index: s.index, threadId: s.threadId, part: !s.ready ? undefined : answered?.view ?? s.lastView };
      }),
      retired: this.#retiredView,
    });
  }

  /**
   * One /metrics page: every worker's series aggregated (prom-client's AggregatorRegistry,
   * each series by its aggregator), with dead workers' counters and the supervisor's own
   * (reloads, restarts, workers, fds).
   */
  async render(): Promise<string> {
    const own = await this.#metrics.snapshot();
    const ownNames = new Set(own.map((m) => m.name));
    const notOwn = (snapshot: MetricsSnapshot): MetricsSnapshot => snapshot.filter((m) => !ownNames.has(m.name));
    const answered = new Map((await this.#snapshots()).map((s) => [s.index, s]));
    // In one step with reading #retired: a worker that died since it answered is counted there, not twice.
    const workers: MetricsSnapshot[] = [];
    for (const slot of this.#workerSlots) {
      const s = answered.get(slot.index);
      if (s !== undefined && slot.ready && slot.threadId === s.threadId) workers.push(s.metrics);
      // Alive but too slow to answer: its counters as last scraped, since Prometheus reads a dip as a reset.
      else if (slot.lastMetrics !== undefined) workers.push(countedOnly(slot.lastMetrics));
    }
    const retired = this.#retired;
    return aggregate([...workers.map(notOwn), notOwn(await retired), own]).metrics();
  }

  get contentType(): string {
    return this.#metrics.contentType;
  }

  /**
   * Every worker takes the new config, without dropping a connection (Relay.reload in
   * each). Restart-only changes are refused here first, so that no worker applies a
   * config another refuses. The metrics listener, the supervisor's, moves like the
   * relay's did: bound before the old one closes. One log line says what changed.
   */
  reload(config: RelayConfig): Promise<void> {
    const run = this.#reloads.then(() => this.#reload(config));
    this.#reloads = run.catch(() => undefined);
    return run;
  }

  async #reload(config: RelayConfig): Promise<void> {
    if (this.#stopping) {
      this.#logger.warn({ event: 'reload' }, 'reload ignored: the relay is draining');
      return;
    }
    const changes = diffConfigs(this.#config, config);
    let metricsServer = this.#metricsServer;
    try {
      const restart = changes.filter((c) => RESTART_ONLY.includes(c.option));
      if (restart.length > 0) {
        throw new RestartRequiredError(`--${restart.map((c) => `${c.option} ${c.change}`).join(', --')}: takes effect only at a restart; `
          + 'nothing was reloaded (restart the relay, or put it back to reload the rest)');
      }
      const metricsMoved = changes.some((c) => c.option === 'metrics');
      if (metricsMoved && config.metrics !== undefined) {
        metricsServer = await startMetricsServer(this, config.metrics.host, config.metrics.port, this);
      }
      // Every worker takes it, or none keeps it. A worker started from now on starts with
      // it; one still starting (not ready) is brought to it once ready (#spawn). A worker
      // that dies meanwhile is no refusal: its replacement starts with the new config.
      const before = this.#spawnConfig;
      this.#spawnConfig = config;
      const running = this.#workerSlots.filter((s) => s.ready);
      const results = await Promise.allSettled(running.map(async (s) => {
        await this.#request(s, (id) => ({ type: 'reload', id, config: workerConfig(config) }));
        s.config = config;
      }));
      const refused = results.flatMap((r, i) => (r.status === 'rejected' && !(r.reason instanceof WorkerExitError) ? [{ reason: r.reason as unknown, slot: running[i] }] : []));
      if (refused.length > 0) {
        this.#spawnConfig = before;
        if (metricsServer !== this.#metricsServer) await closeHttpServer(metricsServer);
        // Those that took it go back to the config in force.
        const took = running.filter((s, i) => results[i]?.status === 'fulfilled' && s.ready);
        const back = await Promise.allSettled(took.map(async (s) => {
          await this.#request(s, (id) => ({ type: 'reload', id, config: workerConfig(before) }));
          s.config = before;
        }));
        if (back.some((r) => r.status === 'rejected')) {
          this.#logger.error({ event: 'reload', refused: refused.length, workers: running.length },
            'workers disagree: a worker refused the new config and another could not be put back; restart the relay to be sure which runs');
        }
        throw refused[0]?.reason;
      }
      if (metricsMoved) {
        await closeHttpServer(this.#metricsServer);
        this.#metricsServer = config.metrics === undefined ? undefined : metricsServer;
      }
      this.#logger.level = config.logLevel;
      this.#config = config;
      await this.#turbo.apply(config);
    } catch (err) {
      this.#reloadCounter(1, labelsFor('result', 'error'));
      throw err;
    }
    this.#reloadCounter(1, labelsFor('result', 'ok'));
    await this.#refreshAddresses();
    await this.#syncEarlySyn();
    const metrics = this.#metricsServer === undefined ? undefined : serverAddress(this.#metricsServer);
    this.#logger.info({ event: 'reload', changed: changes.map((c) => c.option), listeners: this.#fds.keys(), metrics },
      `config reloaded: ${describeChanges(changes)}`);
  }

  /** Counts a reload that failed before it reached the workers (the file did not load). */
  reloadFailed(): void {
    this.#reloadCounter(1, labelsFor('result', 'error'));
  }

  /**
   * Every worker stops accepting and drains (Relay.drain); then the workers end and the
   * metrics listener closes. The one `drain` line is logged once every worker has closed
   * its listeners, so from that line on new connections are refused.
   */
  async drain(drainTimeoutMs?: number): Promise<void> {
    this.#stopping = true;
    // First: new SYNs pass untouched, then the queue readers end.
    const early = this.#earlySyn;
    this.#earlySyn = undefined;
    this.#stopQueueProbe();
    await early?.stop();
    const running = this.#workerSlots.filter((s) => s.ready);
    const draining = new Promise<number>((resolve) => {
      let waiting = running.length;
      let open = 0;
      const timer = setTimeout(() => { resolve(open); }, 3000);
      this.#onDraining = (n) => {
        open += n;
        if (--waiting === 0) { clearTimeout(timer); resolve(open); }
      };
      if (waiting === 0) { clearTimeout(timer); resolve(0); }
    });
    const done = Promise.allSettled(running.map((s) => this.#request(s, (id) => ({
      type: 'drain', id, ...(drainTimeoutMs === undefined ? {} : { timeoutMs: drainTimeoutMs }),
    }))));
    const open = await draining;
    this.#logger.info({ event: 'drain', open, drainTimeoutMs: drainTimeoutMs ?? this.#config.drainTimeoutMs, workers: running.length },
      'listeners closed; draining open connections');
    this.#logger.flush();
    await done;
    await this.#terminateAll();
    this.#fds.closeAll();
    await this.#turbo.stop();
    const server = this.#metricsServer;
    this.#metricsServer = undefined;
    await closeHttpServer(server);
  }

  /** Closes everything now: open connections are reset. */
  async close(): Promise<void> {
    await this.drain(0);
  }

  /**
   * Ends worker `index` as a crash would (its connections are reset) and lets the
   * supervisor replace it; resolves when the replacement is ready. For tests and for
   * an operator's drill.
   */
  async killWorker(index: number): Promise<{ replacedInMs: number; delayMs: number }> {
    const slot = this.#workerSlots[index];
    if (slot === undefined) throw new RangeError(`no worker ${index}`);
    const before = slot.worker;
    const killedAt = performance.now();
    await before.terminate();
    while (slot.worker === before || !slot.ready) {
      if (this.#stopping) throw new WorkerExitError('the relay is stopping: no replacement');
      if (performance.now() - killedAt > 10_000) throw new WorkerExitError(`worker ${index} was not replaced within 10 s`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return { replacedInMs: performance.now() - killedAt, delayMs: slot.replaceDelayMs };
  }

  /** How connections are steered: 'program' (steer() names the worker), 'kernel-hash', or 'none yet'. */
  get steering(): string {
    return this.#fds.steering;
  }

  /** Starts worker `index` (first start or replacement) and resolves once it listens. */
  #spawn(index: number): Promise<void> {
    const data: WorkerData = {
      index, workers: this.workers,
      config: workerConfig(this.#spawnConfig),
      replayBuffer: this.#replay.buffer, slotsBuffer: this.#slots.buffer,
    };
    const worker = new Worker(WORKER_ENTRY, { workerData: data });
    const slot: Slot = this.#workerSlots[index] ?? { index, worker, threadId: worker.threadId, ready: false, startedAt: 0, quickDeaths: 0, replaceDelayMs: 0, lastMetrics: undefined, lastView: undefined, config: this.#spawnConfig, pending: new Map() };
    slot.worker = worker;
    slot.threadId = worker.threadId;
    slot.ready = false;
    slot.startedAt = performance.now();
    slot.config = this.#spawnConfig;
    this.#workerSlots[index] = slot;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      worker.on('message', (message: FromWorker) => {
        switch (message.type) {
          case 'ready':
            slot.ready = true;
            // Started before a reload handed out a newer config: it takes that one now.
            if (slot.config !== this.#spawnConfig) {
              const next = this.#spawnConfig;
              this.#request(slot, (id) => ({ type: 'reload', id, config: workerConfig(next) })).then(
                () => { slot.config = next; },
                (err: unknown) => {
                  this.#logger.error({ event: 'reload', worker: index, code: errorCode(err) },
                    `worker ${index} started during a reload and could not take the new config: ${err instanceof Error ? err.message : String(err)}`);
                },
              );
            }
            // A replacement: the capture of its slot sends to the new thread from now on.
            if (this.#earlySyn !== undefined) {
              const port = this.#earlySyn.retarget(index);
              worker.postMessage({ type: 'syn-events', port } satisfies ToWorker, [port]);
            }
            if (index === 0 || this.#addresses.forward.length + (this.#addresses.accept === undefined ? 0 : 1) === 0) this.#addresses = message.addresses;
            settled = true;
            resolve();
            return;
          case 'failed':
            settled = true;
            reject(fromWire(message.error));
            void worker.terminate();
            return;
          case 'listen':
            this.#fds.fdFor(index, message.key, message.endpoint, message.socketOptions).then(
              (fd) => { post(worker, { type: 'listener', id: message.id, fd }); },
              (err: unknown) => { post(worker, { type: 'listener', id: message.id, error: err instanceof FdRequestError ? err.wire : toWire(err) }); },
            );
            return;
          case 'closed':
            this.#fds.closed(index, message.key);
            return;
          case 'peer-seen':
            void this.#turbo.learn(message.address, this.#config);
            return;
          case 'draining':
            this.#onDraining(message.open);
            return;
          case 'reply': {
            const waiting = slot.pending.get(message.id);
            slot.pending.delete(message.id);
            if (message.error !== undefined) waiting?.reject(fromWire(message.error));
            else waiting?.resolve(message.value);
            return;
          }
        }
      });
      worker.on('error', (err) => {
        this.#logger.error({ event: 'worker-error', worker: index, err }, `worker ${index}: ${err.message}`);
      });
      worker.on('exit', (code) => {
        if (worker !== slot.worker) return;
        slot.ready = false;
        for (const waiting of slot.pending.values()) waiting.reject(new WorkerExitError(`worker ${index} exited (code ${code})`));
        slot.pending.clear();
        // Shared state the dead thread held: the replay guard's lock, connection slots, listener fds.
        this.#replay.releaseIfHeldBy(worker.threadId);
        this.#slots.forget(index);
        this.#fds.workerGone(index);
        if (!settled) {
          settled = true;
          reject(new WorkerExitError(`worker ${index} exited (code ${code}) before it was ready`));
        }
        if (slot.lastMetrics !== undefined) {
          const counted = countedOnly(slot.lastMetrics);
          this.#retired = this.#retired.then((retired) => sumSnapshots([retired, counted]));
        }
        slot.lastMetrics = undefined;
        const v = slot.lastView;
        if (v !== undefined) {
          const r = this.#retiredView;
          this.#retiredView = { closed: r.closed + v.closed + v.open, failed: r.failed + v.failed + v.open, bytes: { up: r.bytes.up + v.bytes.up, down: r.bytes.down + v.bytes.down } };
        }
        slot.lastView = undefined;
        if (this.#stopping || !this.#started) return;
        this.#restartCounter(1);
        const lived = performance.now() - slot.startedAt;
        // The first death is replaced at once; a replacement that dies young again waits.
        slot.quickDeaths = lived < RESTART_BACKOFF_MS ? slot.quickDeaths + 1 : 0;
        this.#logger.error({ event: 'worker-exit', worker: index, code, threadId: worker.threadId },
          `worker ${index} exited (code ${code}); its connections were reset; starting a replacement`);
        this.#replace(index, slot.quickDeaths >= 2 ? RESTART_BACKOFF_MS : 0);
      });
    });
  }

  #replace(index: number, delayMs: number): void {
    const started = performance.now();
    const slot = this.#workerSlots[index];
    if (slot !== undefined) slot.replaceDelayMs = delayMs;
    setTimeout(() => {
      if (this.#stopping) return;
      this.#spawn(index).then(
        () => {
          this.#logger.info({ event: 'worker-restart', worker: index, ms: Math.round(performance.now() - started) }, `worker ${index} replaced`);
        },
        (err: unknown) => {
          this.#logger.error({ event: 'worker-restart', worker: index, err }, `worker ${index} could not be replaced: ${String(err)}`);
        },
      );
    }, delayMs).unref();
  }

  #request(slot: Slot, make: (id: number) => ToWorker, timeoutMs?: number): Promise<WorkerSnapshot | undefined> {
    if (!slot.ready) return Promise.reject(new WorkerExitError(`worker ${slot.index} is not running`));
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          slot.pending.delete(id);
          reject(new WorkerExitError(`worker ${slot.index} did not answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      slot.pending.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      post(slot.worker, make(id));
    });
  }

  /**
   * Every worker's snapshot. Callers at the same moment (a scrape, the status page, ctl)
   * share one round of requests: a worker answers once, however many ask.
   */
  #snapshots(): Promise<WorkerSnapshot[]> {
    this.#inflight ??= this.#takeSnapshots().finally(() => { this.#inflight = undefined; });
    return this.#inflight;
  }

  async #takeSnapshots(): Promise<WorkerSnapshot[]> {
    const results = await Promise.allSettled(this.#workerSlots.map(async (s) => {
      const snapshot = await this.#request(s, (id) => ({ type: 'snapshot', id }), SNAPSHOT_TIMEOUT_MS);
      if (snapshot !== undefined && snapshot.threadId === s.threadId) {
        s.lastMetrics = snapshot.metrics;
        s.lastView = snapshot.view;
      }
      return snapshot;
    }));
    return results.flatMap((r) => (r.status === 'fulfilled' && r.value !== undefined ? [r.value] : []));
  }

  async #refreshAddresses(): Promise<void> {
    // A fresh round: one in flight may have been asked before the reload.
    const [first] = await this.#takeSnapshots();
    if (first !== undefined) this.#addresses = first.addresses;
  }

  async #terminateAll(): Promise<void> {
    await Promise.allSettled(this.#workerSlots.map((s) => s.worker.terminate()));
  }
}

/** How often the queue probe samples (two loopback handshakes). */
const QUEUE_PROBE_INTERVAL_MS = 10_000;
/** 10 us to 10 ms: the queue adds 45-100 us at the median here (benchmarks/README.md), milliseconds when the host is starved. */
const QUEUE_DELAY_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01];

/** The metrics endpoint is the supervisor's: workers only keep their counters. */
function workerConfig(config: RelayConfig): RelayConfig {
  return { ...config, metrics: undefined };
}

function post(worker: Worker, message: ToWorker): void {
  worker.postMessage(message);
}

