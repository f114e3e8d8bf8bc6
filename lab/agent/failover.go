package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/fault"
	"github.com/nfslab/nfslab/lab/verdict"
)

// The failover half of a cell: the fault, the replacement, and waiting for I/O to recover.

// failover kills backend A with the cell's fault and brings backend B up: the service keeps
// pointing at the dead backend for the stale-endpoint time, then has no endpoint for the
// no-endpoint window, then points at B. With either, I/O is in flight meanwhile (as an
// application's would be), so the kernel keeps reconnecting; that probe is returned. A failure
// is recorded on the timeline and returned.
func (r *cellRun) failover(ctx context.Context) (bReady event.Mono, inflight *probeRun, err error) {
	c := r.cell
	setup := c.Timeouts.Setup.Duration
	fctx, cancel := context.WithTimeout(ctx, setup)
	err = r.backendA.Fault(fctx, c.Fault)
	cancel()
	if err != nil {
		r.em.fail(event.StepFaultInjected, err)
		return 0, nil, err
	}
	what := "is gone"
	switch c.Fault {
	case fault.KillContainer:
		what = "lost its server container"
	case fault.RestartNode:
		what = "lost its sandbox: its node restarted"
	}
	r.em.step(event.StepFaultInjected, "%s: pod %s (%s) %s", c.Fault, r.backendA.Name(), r.backendA.Addr(), what)

	stale, window := c.StaleEndpoint.Duration, c.NoEndpointWindow.Duration
	if stale > 0 || window > 0 {
		inflight = r.node.StartProbe(1, false)
		r.probe = inflight
	}
	if stale > 0 {
		if err := r.hold(ctx, stale); err != nil {
			r.em.fail(event.StepStaleEndpoint, err)
			return 0, inflight, err
		}
		r.em.step(event.StepStaleEndpoint, "the service kept pointing at the dead backend %s for %s", r.backendA.Addr(), stale)
	}
	// With the pod gone its endpoint leaves the EndpointSlice: the service has no backend.
	if err := r.cluster.Publish(ctx, nil); err != nil {
		r.em.fail(event.StepFaultInjected, fmt.Errorf("remove endpoint %s: %w", r.backendA.Addr(), err))
		return 0, inflight, err
	}
	if window > 0 {
		if err := r.noEndpointWindow(ctx, window); err != nil {
			r.em.fail(event.StepNoEndpoints, err)
			return 0, inflight, err
		}
	}

	if err := r.wait(ctx, event.StepBackendBReady); err != nil {
		r.em.fail(event.StepBackendBReady, err)
		return 0, inflight, err
	}
	bctx, cancel := context.WithTimeout(ctx, setup)
	defer cancel()
	b, err := r.cluster.StartBackend(bctx)
	if err == nil {
		err = r.cluster.Publish(bctx, b)
	}
	if err != nil {
		r.em.fail(event.StepBackendBReady, err)
		return 0, inflight, err
	}
	ready := r.em.step(event.StepBackendBReady, "%s served on %s:%d in pod %s and %s -> %s (%s)",
		r.cell.Protocol, b.Addr(), r.svc.NFSPort(), b.Name(), r.svc.VIP, b.Addr(), r.svc.PortList())
	return ready.Mono, inflight, nil
}

// hold samples the evidence for d.
func (r *cellRun) hold(ctx context.Context, d time.Duration) error {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	end := time.NewTimer(d)
	defer end.Stop()
	for {
		select {
		case <-tick.C:
			r.sample()
		case <-end.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// noEndpointWindow keeps the service without endpoints for w, sampling evidence, and records
// how hard the kernel tried to reconnect meanwhile.
func (r *cellRun) noEndpointWindow(ctx context.Context, w time.Duration) error {
	opens0, err := r.node.ActiveOpens()
	if err != nil {
		return fmt.Errorf("read TCP counters: %w", err)
	}
	refused0 := r.refused()
	logs0 := r.kernelLogLines()
	start := now()
	if err := r.hold(ctx, w); err != nil {
		return err
	}
	opens1, err := r.node.ActiveOpens()
	if err != nil {
		return fmt.Errorf("read TCP counters: %w", err)
	}
	refused := r.refused() - refused0
	obs := &event.WindowObs{
		Seconds:         now().Sub(start).Seconds(),
		ConnectAttempts: opens1 - opens0 + refused,
		Refused:         refused,
		KernelLogLines:  r.kernelLogLines() - logs0,
	}
	r.em.emit(event.Event{Kind: event.KindObserve, Window: obs})
	r.em.step(event.StepNoEndpoints, "%.1f s without endpoints: %d connect attempts (%.1f/s, %d refused by socket-LB), %d kernel log lines",
		obs.Seconds, obs.ConnectAttempts, float64(obs.ConnectAttempts)/obs.Seconds, obs.Refused, obs.KernelLogLines)
	return nil
}

// kernelLogLines counts the NFS/SUNRPC kernel log lines of the cell so far.
func (r *cellRun) kernelLogLines() int {
	n := 0
	for _, e := range r.em.events() {
		if e.Kernel != nil {
			n++
		}
	}
	return n
}

// awaitRecovery probes I/O until it succeeds, the early verdict is final, or the deadline passes.
// inflight is a probe already running since the fault, if any.
func (r *cellRun) awaitRecovery(ctx context.Context, bReady event.Mono, inflight *probeRun) verdict.Decision {
	c := r.cell
	deadline := time.NewTimer(c.Timeouts.Recovery.Duration)
	defer deadline.Stop()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()

	seq := 1
	p := inflight
	if p == nil {
		p = r.node.StartProbe(seq, false)
		r.probe = p
	}
	stuckSaid := false
	var retry <-chan time.Time
	for {
		var done <-chan error
		if p != nil {
			done = p.done
		}
		select {
		case err := <-done:
			r.emitProbe(p, err, false)
			if err == nil {
				r.em.step(event.StepIORecovered, "I/O recovered %.2f s after backend b was ready", p.finish.Sub(bReady).Seconds())
				return r.decide(true)
			}
			p = nil
			retry = time.After(probeRetryEvery)
		case <-retry:
			retry = nil
			seq++
			p = r.node.StartProbe(seq, false)
			r.probe = p
		case <-tick.C:
			r.sample()
			// A probe counts as stuck once it has run for the probe deadline after backend B
			// was ready (an in-flight probe started earlier, during the failover).
			if p != nil && !stuckSaid && now().Sub(max(p.start, bReady)) > c.Timeouts.Probe.Duration {
				stuckSaid = true
				r.emitProbe(p, nil, true)
				r.em.step(event.StepIOStuck, "probe %d has not finished after %s", p.seq, c.Timeouts.Probe.Duration)
			}
			if d := r.decide(false); d.Final {
				return d
			}
		case <-deadline.C:
			r.em.step(event.StepDeadline, "no recovery %s after backend b was ready", c.Timeouts.Recovery.Duration)
			return r.decide(true)
		case <-ctx.Done():
			r.em.fail(event.StepDeadline, context.Cause(ctx))
			return r.decide(true)
		}
	}
}

func (r *cellRun) emitProbe(p *probeRun, err error, stuck bool) {
	obs := &event.ProbeObs{Seq: p.seq, OK: err == nil && !stuck, Stuck: stuck, StartNS: p.start}
	if stuck {
		obs.Seconds = now().Sub(p.start).Seconds()
	} else {
		obs.FinishNS = p.finish
		obs.Seconds = p.finish.Sub(p.start).Seconds()
	}
	if err != nil {
		obs.Error = err.Error()
	}
	r.em.emit(event.Event{Kind: event.KindObserve, Probe: obs})
}
