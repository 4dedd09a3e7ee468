package index_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	apisecurity "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/engine/enginetest"
	"github.com/mtls-guard/mtls-guard/internal/index"
	"github.com/mtls-guard/mtls-guard/internal/index/clustergen"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/podrecord"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// world is the truth a test keeps next to the index: every object by
// kind, namespace and name, from which a Snapshot is built.
type world map[string]runtime.Object

func key(obj runtime.Object) string {
	m := obj.(metav1.Object)
	return fmt.Sprintf("%T/%s/%s", obj, m.GetNamespace(), m.GetName())
}

func (w world) snapshot() *enginetest.Snapshot {
	s := enginetest.NewSnapshot()
	for _, o := range w {
		s.Add(o)
	}
	return s
}

// changes are the decisions compared between the index and a snapshot:
// the benchmarks' four and a few more that reach other branches.
func changes(c *clustergen.Cluster) []engine.Change {
	var out []engine.Change
	for _, d := range clustergen.Decisions {
		if ch, _, ok := c.Change(d); ok {
			out = append(out, ch)
		}
	}
	strict := apisecurity.PeerAuthentication_MutualTLS_STRICT
	for ns := range c.Config().Namespaces {
		name := c.NamespaceName(ns)
		out = append(out,
			engine.Change{Operation: engine.Create, Policy: policy.FromV1(clustergen.PeerAuthentication(name, "default", strict, nil))},
			engine.Change{Operation: engine.Create, Policy: policy.FromV1(clustergen.PeerAuthentication(name, "w", strict,
				map[string]string{"app": clustergen.WorkloadName(c.UnmeshedWorkload(ns))}))},
			engine.Change{Operation: engine.Create, Policy: policy.FromV1(clustergen.PeerAuthentication(name, "team", strict,
				map[string]string{"team": "team-3"}))},
		)
	}
	out = append(out,
		engine.Change{Operation: engine.Create, Policy: policy.FromV1(clustergen.PeerAuthentication(clustergen.RootNamespace, "zz-strict", strict, nil))},
		engine.Change{Operation: engine.Delete, Policy: policy.FromV1(clustergen.PeerAuthentication(clustergen.RootNamespace, clustergen.MeshPolicy, apisecurity.PeerAuthentication_MutualTLS_PERMISSIVE, nil))},
	)
	return out
}

// compare decides every change on the index and on a snapshot of the
// truth, under both sidecar modes, and wants identical decisions.
func compare(t *testing.T, ix *index.Index, w world, chs []engine.Change) {
	t.Helper()
	s := w.snapshot()
	for _, mode := range []mesh.SidecarMode{mesh.Native, mesh.Any} {
		o := engine.DefaultOptions()
		o.SidecarMode = mode
		for _, ch := range chs {
			want, err := engine.Decide(s, ch, o)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ix.DecideWith(ch, o)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %s (%s): the index decided\n%+v\nthe snapshot\n%+v", ch.Operation, ch.Policy.Key(), mode, got, want)
			}
		}
	}
}

// seedFlag replays a random test: go test -run TestIndexFollowsEvents
// -index.seed N (or MTLS_GUARD_SEED=N). Zero picks a new seed.
var seedFlag = flag.Uint64("index.seed", 0, "seed of TestIndexFollowsEvents; 0 picks one (also MTLS_GUARD_SEED)")

// testSeed returns the seed to use and logs it, so that a failure can be
// replayed.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := *seedFlag
	if v := os.Getenv("MTLS_GUARD_SEED"); seed == 0 && v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MTLS_GUARD_SEED=%q: %v", v, err)
		}
		seed = n
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with -index.seed %d)", seed, seed)
	return seed
}

// TestIndexFollowsEvents applies random adds, updates and deletes (some
// as tombstones) and checks after each round that the index decides as a
// snapshot of the same objects. The objects to mutate are chosen from a
// sorted list, so that one seed replays the same run.
func TestIndexFollowsEvents(t *testing.T) {
	seed := testSeed(t)
	c := clustergen.New(clustergen.Config{Pods: 600, Namespaces: 6, Seed: seed})
	ix := index.New(engine.DefaultOptions())
	w := world{}
	// The index gets what the cache hands over: pods as records.
	in := func(o runtime.Object) any {
		if p, ok := o.(*corev1.Pod); ok {
			return podrecord.New(p)
		}
		return o
	}
	for _, o := range c.Objects() {
		ix.OnAdd(in(o), true)
		w[key(o)] = o
	}
	chs := changes(c)
	compare(t, ix, w, chs)

	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// pods lists the world's pods in key order: ranging over the map
	// would pick different pods for the same seed.
	pods := func() []*corev1.Pod {
		var keys []string
		for k, o := range w {
			if _, ok := o.(*corev1.Pod); ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		out := make([]*corev1.Pod, len(keys))
		for i, k := range keys {
			out[i] = w[k].(*corev1.Pod)
		}
		return out
	}
	now := metav1.Now()
	mutations := []func(p *corev1.Pod){
		func(p *corev1.Pod) { p.Spec.InitContainers = nil },                                              // loses its sidecar
		func(p *corev1.Pod) { p.Labels["app"] = "svc-moved" },                                            // another workload
		func(p *corev1.Pod) { p.Labels["team"] = "team-3" },                                              // another label set
		func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },                                     // no longer counted
		func(p *corev1.Pod) { p.DeletionTimestamp = &now },                                               // being deleted
		func(p *corev1.Pod) { p.Labels[mesh.ExemptLabel] = "true" },                                      // exempt
		func(p *corev1.Pod) { p.Spec.HostNetwork = true },                                                // host network
		func(p *corev1.Pod) { p.Annotations = map[string]string{mesh.AmbientRedirectionKey: "enabled"} }, // ambient
		func(p *corev1.Pod) { p.Annotations = map[string]string{mesh.AmbientRedirectionKey: "pending"} }, // ambient pending
		func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy"})
		}, // classic
	}
	for round := range 40 {
		for range 25 {
			ps := pods()
			p := ps[rng.IntN(len(ps))]
			switch op := rng.IntN(10); {
			case op < 6: // update
				cp := p.DeepCopy()
				mutations[rng.IntN(len(mutations))](cp)
				ix.OnUpdate(in(p), in(cp))
				w[key(cp)] = cp
			case op < 8: // delete, half of them as tombstones
				if op == 6 {
					ix.OnDelete(in(p))
				} else {
					ix.OnDelete(toolscache.DeletedFinalStateUnknown{Key: p.Namespace + "/" + p.Name, Obj: in(p)})
				}
				delete(w, key(p))
			default: // a new pod in a namespace that may be new
				cp := p.DeepCopy()
				cp.Name = fmt.Sprintf("extra-%d-%d", round, rng.IntN(1e6))
				if rng.IntN(4) == 0 {
					cp.Namespace = fmt.Sprintf("new-%d", rng.IntN(3))
				}
				ix.OnAdd(in(cp), false)
				w[key(cp)] = cp
			}
		}
		// Policies come and go too.
		ns := c.NamespaceName(rng.IntN(c.Config().Namespaces))
		pa := clustergen.PeerAuthentication(ns, "ns-wide", apisecurity.PeerAuthentication_MutualTLS_Mode(rng.IntN(4)), nil)
		if _, ok := w[key(pa)]; ok && rng.IntN(2) == 0 {
			ix.OnDelete(pa)
			delete(w, key(pa))
		} else {
			ix.OnAdd(pa, false)
			w[key(pa)] = pa
		}
		compare(t, ix, w, chs)
	}

	// Deleting everything leaves nothing behind.
	for _, o := range w {
		ix.OnDelete(in(o))
	}
	if st := ix.Stats(); st != (index.Stats{}) {
		t.Errorf("after deleting everything the index holds %+v", st)
	}
}

// TestIndexIgnoresOtherKinds checks that unknown objects and deletions of
// unknown objects are harmless.
func TestIndexIgnoresOtherKinds(t *testing.T) {
	ix := index.New(engine.DefaultOptions())
	if ix.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "b"}}) {
		t.Error("a ConfigMap was taken")
	}
	ix.OnDelete(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "missing"}})
	ix.OnDelete(toolscache.DeletedFinalStateUnknown{Key: "a/b", Obj: &corev1.Service{}})
	ix.OnDelete(&securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "missing"}})
	if st := ix.Stats(); st != (index.Stats{}) {
		t.Errorf("index holds %+v", st)
	}
	if _, err := ix.Decide(engine.Change{Operation: engine.Create, Policy: policy.FromV1(clustergen.PeerAuthentication("a", "x", apisecurity.PeerAuthentication_MutualTLS_STRICT, nil))}); err != nil {
		t.Error(err)
	}
}

// TestIndexUnknownSidecarMode fails the decision rather than guessing.
func TestIndexUnknownSidecarMode(t *testing.T) {
	c := clustergen.New(clustergen.Config{Pods: 100, Namespaces: 2})
	o := engine.DefaultOptions()
	o.SidecarMode = "sometimes"
	ix := index.New(o)
	for _, obj := range c.Objects() {
		ix.Add(obj)
	}
	ch, _, _ := c.Change(clustergen.NamespaceWide)
	if d, err := ix.Decide(ch); err == nil {
		t.Errorf("decided %+v", d)
	}
}

// TestIndexWithInformers attaches the index to real client-go informers
// over fake clientsets and follows creations and deletions.
func TestIndexWithInformers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := clustergen.New(clustergen.Config{Pods: 200, Namespaces: 4})
	var k8sObjs, istioObjs []runtime.Object
	for _, o := range c.Objects() {
		if _, ok := o.(*securityv1.PeerAuthentication); ok {
			istioObjs = append(istioObjs, o)
		} else {
			k8sObjs = append(k8sObjs, o)
		}
	}
	kc := k8sfake.NewClientset(k8sObjs...)
	ic := istiofake.NewSimpleClientset(istioObjs...)
	kf := informers.NewSharedInformerFactory(kc, 0)
	podInformer := kf.Core().V1().Pods().Informer()
	if err := podInformer.SetTransform(podrecord.Transform); err != nil {
		t.Fatal(err)
	}
	// Istio's fake clientset does not stream initial lists; say so, as
	// client-go's own fake does.
	paInformer := toolscache.NewSharedIndexInformer(noWatchList{&toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return ic.SecurityV1().PeerAuthentications("").List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return ic.SecurityV1().PeerAuthentications("").Watch(ctx, o)
		},
	}}, &securityv1.PeerAuthentication{}, 0, toolscache.Indexers{})
	ix := index.New(engine.DefaultOptions())
	synced, err := ix.Attach(podInformer, kf.Core().V1().Namespaces().Informer(), kf.Apps().V1().ReplicaSets().Informer(),
		kf.Batch().V1().Jobs().Informer(), paInformer)
	if err != nil {
		t.Fatal(err)
	}
	kf.Start(ctx.Done())
	done := make(chan struct{})
	go func() { paInformer.RunWithContext(ctx); close(done) }()
	defer func() { cancel(); kf.Shutdown(); <-done }()
	if !toolscache.WaitForCacheSync(ctx.Done(), synced) {
		t.Fatal("the index never synced")
	}
	w := world{}
	for _, o := range c.Objects() {
		w[key(o)] = o
	}
	compare(t, ix, w, changes(c))

	// Deleting the unmeshed pods of namespace 0 makes its STRICT allowed.
	ch, _, _ := c.Change(clustergen.NamespaceWide)
	if d, _ := ix.Decide(ch); d.Allowed {
		t.Fatalf("allowed before the deletions: %s", d.Message)
	}
	for i := range c.NumPods() {
		p := c.Pod(i)
		if meshed, _ := mesh.Classify(p, mesh.Native); p.Namespace == c.NamespaceName(0) && !meshed {
			if err := kc.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(ctx, t, "the deletions to reach the index", func() bool {
		d, err := ix.Decide(ch)
		return err == nil && d.Allowed
	})

	// A new unmeshed pod there denies it again; a STRICT policy created
	// through the API reaches the index as well.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: c.NamespaceName(0), Name: "late", Labels: map[string]string{"app": "late"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "late"}}},
	}
	if _, err := kc.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the new pod to reach the index", func() bool {
		d, err := ix.Decide(ch)
		return err == nil && !d.Allowed && len(d.Unmeshed) == 1 && d.Unmeshed[0].Name == "late"
	})
	// An update reaches it too: the store holds records, and the informer
	// tells an update from a resync by their resourceVersion.
	exempt := pod.DeepCopy()
	exempt.Labels[mesh.ExemptLabel] = "true"
	exempt.ResourceVersion = "2" // the fake clientset keeps what it is given
	if _, err := kc.CoreV1().Pods(pod.Namespace).Update(ctx, exempt, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the pod's update to reach the index", func() bool {
		d, err := ix.Decide(ch)
		return err == nil && d.Allowed
	})
	stored, ok, err := podInformer.GetStore().GetByKey(pod.Namespace + "/" + pod.Name)
	if rec, isRecord := stored.(*podrecord.Pod); err != nil || !ok || !isRecord || rec.ResourceVersion != "2" || rec.Counted {
		t.Errorf("the pod informer stores %T %+v (%v, %v), want the record of the exempt pod", stored, stored, ok, err)
	}
	policies := ix.Stats().Policies
	pa := clustergen.PeerAuthentication(c.NamespaceName(2), "default", apisecurity.PeerAuthentication_MutualTLS_STRICT, nil)
	if _, err := ic.SecurityV1().PeerAuthentications(pa.Namespace).Create(ctx, pa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the policy to reach the index", func() bool {
		return ix.Stats().Policies == policies+1
	})
}

// noWatchList marks a ListerWatcher whose server cannot stream initial
// lists.
type noWatchList struct{ toolscache.ListerWatcher }

func (noWatchList) IsWatchListSemanticsUnSupported() bool { return true }

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// TestIndexConcurrentUse decides while events arrive; run with -race.
func TestIndexConcurrentUse(t *testing.T) {
	c := clustergen.New(clustergen.Config{Pods: 1000, Namespaces: 10})
	ix := index.New(engine.DefaultOptions())
	for _, o := range c.Objects() {
		ix.Add(o)
	}
	chs := changes(c)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ch := chs[(g+i)%len(chs)]
				o := engine.DefaultOptions()
				if i%2 == 0 {
					o.SidecarMode = mesh.Any
				}
				_, err := ix.DecideWith(ch, o)
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range 2000 {
		p := c.Pod(i % c.NumPods())
		switch i % 3 {
		case 0:
			ix.OnDelete(p)
		case 1:
			ix.OnAdd(p, false)
		default:
			ix.OnAdd(podrecord.New(p), false)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestReplicaSetOwners checks that owners resolve through the index's
// ReplicaSets: every unmeshed workload of the generated cluster is a
// Deployment.
func TestReplicaSetOwners(t *testing.T) {
	c := clustergen.New(clustergen.Config{Pods: 1000, Namespaces: 10})
	ix := index.New(engine.DefaultOptions())
	for _, o := range c.Objects() {
		ix.Add(o)
	}
	ch, _, _ := c.Change(clustergen.MeshWide)
	d, err := ix.Decide(ch)
	if err != nil {
		t.Fatal(err)
	}
	if d.Allowed || len(d.Touched) != 9 {
		t.Fatalf("allowed=%v touched=%v", d.Allowed, d.Touched)
	}
	pods := 0
	for _, w := range d.Unmeshed {
		if w.Kind != "Deployment" {
			t.Errorf("workload %s/%s/%s", w.Namespace, w.Kind, w.Name)
		}
		pods += len(w.Pods)
	}
	// Namespace 1 runs STRICT with an exemption; the others are touched.
	if want := c.Unmeshed() - 5; pods != want {
		t.Errorf("%d unmeshed pods listed, want %d", pods, want)
	}
	var rs []*appsv1.ReplicaSet
	for _, o := range c.Objects() {
		if r, ok := o.(*appsv1.ReplicaSet); ok {
			rs = append(rs, r)
		}
	}
	for _, r := range rs {
		ix.OnDelete(r)
	}
	// Without the ReplicaSets the pod-template-hash rule still finds the
	// Deployments.
	d2, err := ix.Decide(ch)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d2.Unmeshed, d.Unmeshed) {
		t.Errorf("without ReplicaSets:\n%+v\nwith:\n%+v", d2.Unmeshed, d.Unmeshed)
	}
}

// TestOwnerChangesRegroup checks that the cached grouping follows the
// owners: a ReplicaSet that changes controller, then goes away.
func TestOwnerChangesRegroup(t *testing.T) {
	c := clustergen.New(clustergen.Config{Pods: 200, Namespaces: 2})
	ix := index.New(engine.DefaultOptions())
	for _, o := range c.Objects() {
		ix.Add(o)
	}
	ch, _, _ := c.Change(clustergen.NamespaceWide)
	owners := func() []string {
		t.Helper()
		d, err := ix.Decide(ch)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, w := range d.Unmeshed {
			out = append(out, w.Kind+"/"+w.Name)
		}
		return out
	}
	want := "Deployment/" + clustergen.WorkloadName(c.UnmeshedWorkload(0))
	if got := owners(); !reflect.DeepEqual(got, []string{want}) {
		t.Fatalf("owners %v, want %s", got, want)
	}
	var rs *appsv1.ReplicaSet
	for _, r := range c.ReplicaSets() {
		if r.Namespace == c.NamespaceName(0) && r.Labels["app"] == clustergen.WorkloadName(c.UnmeshedWorkload(0)) {
			rs = r
		}
	}
	status := rs.DeepCopy()
	status.Status.Replicas = 5 // a status update changes no owner
	ix.OnUpdate(rs, status)
	if got := owners(); !reflect.DeepEqual(got, []string{want}) {
		t.Fatalf("after a status update: owners %v", got)
	}
	adopted := status.DeepCopy()
	adopted.OwnerReferences[0].Kind, adopted.OwnerReferences[0].Name = "Rollout", "canary"
	ix.OnUpdate(status, adopted)
	if got := owners(); !reflect.DeepEqual(got, []string{"Rollout/canary"}) {
		t.Fatalf("after adoption: owners %v", got)
	}
	orphan := adopted.DeepCopy()
	orphan.OwnerReferences = nil
	ix.OnUpdate(adopted, orphan)
	if got := owners(); !reflect.DeepEqual(got, []string{"ReplicaSet/" + rs.Name}) {
		t.Fatalf("after orphaning: owners %v", got)
	}
	ix.OnDelete(orphan)
	if got := owners(); !reflect.DeepEqual(got, []string{want}) { // the pod-template-hash rule
		t.Fatalf("after deletion: owners %v", got)
	}
}
