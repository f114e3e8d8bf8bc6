package kind

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// WatchEndpoints runs an informer on the EndpointSlices of the namespace's nfs Service and calls
// update with the Service's ready addresses (sorted) each time they change, the first time once
// the informer has synced. It returns once the informer runs; the informer stops when ctx ends.
// update is called from one goroutine at a time.
func WatchEndpoints(ctx context.Context, c kubernetes.Interface, namespace string, update func([]netip.Addr)) error {
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelServiceName + "=" + serviceName
		}))
	inf := f.Discovery().V1().EndpointSlices()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
	}); err != nil {
		return fmt.Errorf("watch the nfs Service's EndpointSlices: %w", err)
	}
	f.Start(ctx.Done())
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), inf.Informer().HasSynced) {
		f.Shutdown()
		return fmt.Errorf("watch the nfs Service's EndpointSlices in %s: the informer did not sync", namespace)
	}
	lister := inf.Lister().EndpointSlices(namespace)
	go func() {
		defer f.Shutdown()
		var last []netip.Addr
		first := true
		for {
			if list, err := lister.List(labels.Everything()); err == nil {
				now := readyAddrs(list)
				if first || !slices.Equal(now, last) {
					first, last = false, now
					update(now)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}()
	return nil
}

// readyAddrs are the sorted ready addresses of slices (an endpoint without a Ready condition
// counts as ready, as kube-proxy reads it).
func readyAddrs(list []*discoveryv1.EndpointSlice) []netip.Addr {
	var out []netip.Addr
	for _, s := range list {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					out = append(out, ip)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}
