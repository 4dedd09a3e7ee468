// Package index keeps the guard's view of the cluster up to date from
// informer events, so that a decision costs what changes: per namespace it
// holds the compiled policies, the number of counted pods, their distinct
// label sets and the unmeshed pods with their reasons under both sidecar
// modes, grouped by workload once and kept until they change. A
// namespace-wide decision then costs that namespace's label sets and
// unmeshed workloads, and a mesh-wide one the namespaces and the unmeshed
// workloads, not every pod of the cluster.
//
// Pods arrive as podrecord records (the pod informer's transform), or as
// corev1.Pods that the index turns into records; either way it keeps no
// pod object, only its record. Decide runs engine.Decide under one read
// lock on the index's facts.
package index

import (
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unique"

	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	securityv1beta1 "istio.io/client-go/pkg/apis/security/v1beta1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/mtls-guard/mtls-guard/internal/engine"
	"github.com/mtls-guard/mtls-guard/internal/mesh"
	"github.com/mtls-guard/mtls-guard/internal/podrecord"
	"github.com/mtls-guard/mtls-guard/internal/policy"
)

// Index keeps the guard's facts of the cluster from informer events and
// decides from them. It is safe for concurrent use: events take a write
// lock, decisions a read lock.
type Index struct {
	opts engine.Options
	mu   sync.RWMutex
	st   state
}

var (
	_ engine.Cluster                  = (*state)(nil)
	_ toolscache.ResourceEventHandler = (*Index)(nil)
)

// New returns an empty index that decides with opts.
func New(opts engine.Options) *Index {
	return &Index{opts: opts, st: state{root: opts.RootNamespace, namespaces: map[string]*namespace{}}}
}

// Decide decides a change on a consistent view of the index: it holds the
// read lock for the whole decision, so events wait at most that long.
func (ix *Index) Decide(ch engine.Change) (*engine.Decision, error) {
	return ix.DecideWith(ch, ix.opts)
}

// DecideWith is Decide with other options; the index answers for either
// sidecar mode.
func (ix *Index) DecideWith(ch engine.Change, o engine.Options) (*engine.Decision, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return engine.Decide(&ix.st, ch, o)
}

// View calls fn with the index's view of the cluster under the read
// lock, for callers that read it as an engine.Cluster (report); fn must
// not keep the view.
func (ix *Index) View(fn func(engine.Cluster) error) error {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return fn(strictCached{&ix.st, ix.opts})
}

// DecidePod judges a pod as it is created (engine.DecidePod), reading
// the namespace's strictness from a cache that policy and pod events keep
// up to date: the answer costs neither the namespace's pods nor its
// label sets once the cache holds it.
func (ix *Index) DecidePod(pod *corev1.Pod) (engine.Arrival, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return engine.DecidePod(strictCached{&ix.st, ix.opts}, pod, ix.opts)
}

// DecideTemplate predicts a workload's pod template (engine.DecideTemplate).
func (ix *Index) DecideTemplate(namespace string, t *corev1.PodTemplateSpec) (engine.Arrival, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return engine.DecideTemplate(strictCached{&ix.st, ix.opts}, namespace, t, ix.opts)
}

// Owner names the workload that a pod's Events belong to: the pod's
// controller, or that controller's own controller for a ReplicaSet (a
// Deployment) or a Job (a CronJob) that the index holds; the pod itself
// when it has none.
func (ix *Index) Owner(pod *corev1.Pod) corev1.ObjectReference {
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		return corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var up *metav1.OwnerReference
	if n := ix.st.namespaces[pod.Namespace]; n != nil {
		switch ref.Kind {
		case "ReplicaSet":
			if rs := n.replicaSets[ref.Name]; rs != nil {
				up = metav1.GetControllerOfNoCopy(rs)
			}
		case "Job":
			if job := n.jobs[ref.Name]; job != nil {
				up = metav1.GetControllerOfNoCopy(job)
			}
		}
	}
	if up != nil {
		ref = up
	}
	return corev1.ObjectReference{APIVersion: ref.APIVersion, Kind: ref.Kind, Namespace: pod.Namespace, Name: ref.Name, UID: ref.UID}
}

// strictCached is the index's state with engine.NamespaceStrict cached per
// namespace; readers under the read lock fill the cache (racing readers
// store equal values), writers empty it.
type strictCached struct {
	*state
	opts engine.Options
}

// NamespaceStrict answers from the namespace's cache, filling it.
func (s strictCached) NamespaceStrict(ns string) (bool, error) {
	n := s.namespaces[ns]
	if n == nil {
		return false, nil
	}
	switch n.strict.Load() {
	case strictYes:
		return true, nil
	case strictNo:
		return false, nil
	}
	v, err := engine.NamespaceStrict(s.state, ns, s.opts)
	if err != nil {
		return false, err
	}
	if v {
		n.strict.Store(strictYes)
	} else {
		n.strict.Store(strictNo)
	}
	return v, nil
}

// The values of namespace.strict.
const (
	strictUnknown int32 = iota
	strictNo
	strictYes
)

// Informer is what the index needs of an informer; controller-runtime's
// cache.Informer and client-go's SharedInformer both have it.
type Informer interface {
	AddEventHandler(handler toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error)
}

// Attach registers the index as an event handler of every informer (one
// each for Pods, Namespaces, ReplicaSets, Jobs and PeerAuthentications)
// and returns a check that reports whether all of them have delivered
// their initial lists to the index; decide only once it is true.
func (ix *Index) Attach(informers ...Informer) (hasSynced func() bool, err error) {
	regs := make([]toolscache.ResourceEventHandlerRegistration, 0, len(informers))
	for _, inf := range informers {
		reg, err := inf.AddEventHandler(ix)
		if err != nil {
			return nil, fmt.Errorf("adding the index's event handler: %w", err)
		}
		regs = append(regs, reg)
	}
	return func() bool {
		for _, r := range regs {
			if !r.HasSynced() {
				return false
			}
		}
		return true
	}, nil
}

// OnAdd implements toolscache.ResourceEventHandler.
func (ix *Index) OnAdd(obj any, _ bool) { ix.Add(obj) }

// OnUpdate implements toolscache.ResourceEventHandler. Objects are keyed
// by namespace and name, which an update never changes.
func (ix *Index) OnUpdate(_, newObj any) { ix.Add(newObj) }

// OnDelete implements toolscache.ResourceEventHandler; it accepts the
// informers' tombstones.
func (ix *Index) OnDelete(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.st.remove(obj)
}

// Add creates or replaces an object of a kind the engine reads and
// reports whether it did; other kinds are ignored.
func (ix *Index) Add(obj any) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.st.add(obj)
}

// SetPolicy adds or replaces a compiled policy, as Snapshot.SetPolicy
// does; informers deliver PeerAuthentications through Add instead.
func (ix *Index) SetPolicy(p *policy.Policy) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.st.setPolicy(p)
}

// Stats counts what the index holds.
type Stats struct {
	Namespaces, Pods, Counted, LabelSets, Policies int
	// Unmeshed counts the counted pods unmeshed under --sidecar-mode=native,
	// UnmeshedAny those unmeshed under --sidecar-mode=any.
	Unmeshed, UnmeshedAny int
}

// Stats counts what the index holds, for logs and tests.
func (ix *Index) Stats() Stats {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	var s Stats
	for _, n := range ix.st.namespaces {
		s.Namespaces++
		s.Pods += len(n.pods)
		s.Counted += n.counted
		s.LabelSets += len(n.classes)
		s.Policies += len(n.policies)
		for m, mode := range modes {
			switch mode {
			case mesh.Native:
				s.Unmeshed += len(n.unmeshed[m].pods)
			case mesh.Any:
				s.UnmeshedAny += len(n.unmeshed[m].pods)
			}
		}
	}
	return s
}

// state is the index's data; its methods take no lock.
type state struct {
	root       string // the root namespace, whose policies reach every namespace
	namespaces map[string]*namespace
	// podNamespaces lists the namespaces that hold pods, sorted; it is
	// replaced, never modified, so that readers may keep it.
	podNamespaces []string
}

// namespace is what the index holds for one namespace.
type namespace struct {
	obj         *corev1.Namespace
	policies    map[string]*policy.Policy
	policyList  []*policy.Policy // replaced, never modified
	replicaSets map[string]*appsv1.ReplicaSet
	jobs        map[string]*batchv1.Job
	pods        map[string]*podEntry
	// counted is the number of counted pods, classes groups them by label
	// set, and unmeshed lists the unmeshed ones per sidecar mode.
	counted int
	classes map[unique.Handle[string]]*labelClass
	// istio groups the counted pods by Istio workload name
	// (mesh.WorkloadName), the name telemetry gives, so that plaintext
	// evidence reaches their label sets.
	istio         map[string]*istioWorkload
	istioWorkload func(string) (string, iter.Seq2[map[string]string, int])
	// strict caches engine.NamespaceStrict (strictUnknown, strictNo,
	// strictYes) for the sidecar mode of the index's options; emptied by
	// every event that may change it.
	strict atomic.Int32
	// exempt holds the pods that would be counted but for their exempt
	// label, by name; few, so decisions filter them per mode.
	exempt   map[string]*podrecord.Pod
	unmeshed [len(modes)]unmeshedList
	// eachLabelSet is labelSets as a func value, made once rather than on
	// every decision.
	eachLabelSet func(yield func(map[string]string, int) bool)
	// groups caches engine.Group of each mode's unmeshed pods between
	// decisions: a reader fills it under the read lock (readers that race
	// store equal values), a writer empties it when the unmeshed pods or
	// their owners change. workloads are the func values that read it.
	groups    [len(modes)]atomic.Pointer[[]engine.Workload]
	workloads [len(modes)]func() ([]engine.Workload, error)
}

// modes are the sidecar modes the index keeps unmeshed pods for, those a
// record is classified under, so that one index answers for either.
var modes = podrecord.Modes

// podEntry is one pod of a namespace.
type podEntry struct {
	pod *podrecord.Pod
	// class is the pod's label set, istio its Istio workload; nil when the
	// pod is not counted.
	class *labelClass
	istio *istioWorkload
	// slot is the pod's position in the namespace's unmeshed list of each
	// mode, or -1 when it is meshed there.
	slot [len(modes)]int32
}

// istioWorkload is the counted pods of one Istio workload name: the kind
// of the first pod seen, and their label sets with pod counts.
type istioWorkload struct {
	kind, name string
	classes    map[*labelClass]int
}

// labelClass is a distinct label set of counted pods: the labels are
// decoded from the records' podrecord.LabelKey once per set.
type labelClass struct {
	key    unique.Handle[string]
	labels map[string]string
	pods   int
}

// unmeshedList is a set of unmeshed pods kept as a slice, so that the
// engine reads it without a copy; removal swaps in the last element.
type unmeshedList struct {
	pods    []engine.UnmeshedPod
	entries []*podEntry
}

// grouped returns the cached grouping of mode m's unmeshed pods, computing
// it if a change emptied the cache.
func (n *namespace) grouped(s *state, m int) ([]engine.Workload, error) {
	if ws := n.groups[m].Load(); ws != nil {
		return *ws, nil
	}
	ws, err := engine.Group(s, n.unmeshed[m].pods)
	if err != nil {
		return nil, err
	}
	n.groups[m].Store(&ws)
	return ws, nil
}

// regroup empties the cached groupings; writers only.
func (n *namespace) regroup() {
	for m := range modes {
		n.groups[m].Store(nil)
	}
}

func (l *unmeshedList) add(e *podEntry, m int, reason mesh.Reason) {
	e.slot[m] = int32(len(l.pods))
	l.pods = append(l.pods, engine.UnmeshedPod{
		Namespace: e.pod.Namespace, Name: e.pod.Name, Labels: e.class.labels, Controller: e.pod.Controller, Reason: reason,
	})
	l.entries = append(l.entries, e)
}

func (l *unmeshedList) remove(e *podEntry, m int) {
	i, last := e.slot[m], len(l.pods)-1
	l.pods[i], l.entries[i] = l.pods[last], l.entries[last]
	l.entries[i].slot[m] = i
	l.pods[last], l.entries[last] = engine.UnmeshedPod{}, nil
	l.pods, l.entries = l.pods[:last], l.entries[:last]
	e.slot[m] = -1
}

// ns returns the namespace's state, creating it.
func (s *state) ns(name string) *namespace {
	n := s.namespaces[name]
	if n == nil {
		n = &namespace{
			policies:    map[string]*policy.Policy{},
			replicaSets: map[string]*appsv1.ReplicaSet{},
			jobs:        map[string]*batchv1.Job{},
			pods:        map[string]*podEntry{},
			classes:     map[unique.Handle[string]]*labelClass{},
		}
		n.eachLabelSet = n.labelSets
		n.istioWorkload = n.istioLabelSets
		for m := range modes {
			n.workloads[m] = func() ([]engine.Workload, error) { return n.grouped(s, m) }
		}
		s.namespaces[name] = n
	}
	return n
}

// gc drops a namespace that holds nothing.
func (s *state) gc(name string) {
	if n := s.namespaces[name]; n != nil && n.obj == nil && len(n.policies) == 0 && len(n.replicaSets) == 0 &&
		len(n.jobs) == 0 && len(n.pods) == 0 {
		delete(s.namespaces, name)
	}
}

func (s *state) add(obj any) bool {
	switch o := obj.(type) {
	case *podrecord.Pod:
		s.setPod(o)
	case *corev1.Pod:
		s.setPod(podrecord.New(o))
	case *corev1.Namespace:
		s.ns(o.Name).obj = o
	case *appsv1.ReplicaSet:
		n := s.ns(o.Namespace)
		if old := n.replicaSets[o.Name]; old == nil || !sameController(old, o) {
			n.regroup() // owners may change; status updates do not regroup
		}
		n.replicaSets[o.Name] = o
	case *batchv1.Job:
		n := s.ns(o.Namespace)
		if old := n.jobs[o.Name]; old == nil || !sameController(old, o) {
			n.regroup()
		}
		n.jobs[o.Name] = o
	case *securityv1.PeerAuthentication, *securityv1beta1.PeerAuthentication:
		s.setPolicy(policy.From(o))
	default:
		return false
	}
	return true
}

func (s *state) remove(obj any) {
	switch o := obj.(type) {
	case *podrecord.Pod:
		s.deletePod(o.Namespace, o.Name)
	case *corev1.Pod:
		s.deletePod(o.Namespace, o.Name)
	case *corev1.Namespace:
		if n := s.namespaces[o.Name]; n != nil {
			n.obj = nil
			s.gc(o.Name)
		}
	case *appsv1.ReplicaSet:
		if n := s.namespaces[o.Namespace]; n != nil {
			delete(n.replicaSets, o.Name)
			n.regroup()
			s.gc(o.Namespace)
		}
	case *batchv1.Job:
		if n := s.namespaces[o.Namespace]; n != nil {
			delete(n.jobs, o.Name)
			n.regroup()
			s.gc(o.Namespace)
		}
	case *securityv1.PeerAuthentication:
		s.deletePolicy(o.Namespace, o.Name)
	case *securityv1beta1.PeerAuthentication:
		s.deletePolicy(o.Namespace, o.Name)
	}
}

// sameController reports whether two versions of an owner have the same
// controller, all that grouping reads of them.
func sameController(a, b metav1.Object) bool {
	ca, cb := metav1.GetControllerOfNoCopy(a), metav1.GetControllerOfNoCopy(b)
	if ca == nil || cb == nil {
		return ca == cb
	}
	return ca.Kind == cb.Kind && ca.Name == cb.Name
}

func (s *state) setPolicy(p *policy.Policy) {
	n := s.ns(p.Namespace)
	n.policies[p.Name] = p
	n.listPolicies()
	s.policiesChanged(p.Namespace)
}

// policiesChanged empties the strictness caches that a policy change in
// ns may change: ns's, or every namespace's for the root namespace.
func (s *state) policiesChanged(ns string) {
	if ns == s.root {
		for _, n := range s.namespaces {
			n.strict.Store(strictUnknown)
		}
		return
	}
	if n := s.namespaces[ns]; n != nil {
		n.strict.Store(strictUnknown)
	}
}

func (s *state) deletePolicy(namespace, name string) {
	n := s.namespaces[namespace]
	if n == nil {
		return
	}
	if _, ok := n.policies[name]; ok {
		delete(n.policies, name)
		n.listPolicies()
		s.policiesChanged(namespace)
	}
	s.gc(namespace)
}

// listPolicies replaces the policy list, sorted by name.
func (n *namespace) listPolicies() {
	l := make([]*policy.Policy, 0, len(n.policies))
	for _, p := range n.policies {
		l = append(l, p)
	}
	slices.SortFunc(l, func(a, b *policy.Policy) int { return strings.Compare(a.Name, b.Name) })
	n.policyList = l
}

func (s *state) setPod(pod *podrecord.Pod) {
	n := s.ns(pod.Namespace)
	e := n.pods[pod.Name]
	if e == nil {
		if len(n.pods) == 0 {
			s.addPodNamespace(pod.Namespace)
		}
		e = &podEntry{}
		n.pods[pod.Name] = e
	} else {
		n.forget(e)
	}
	e.pod, e.slot = pod, [len(modes)]int32{-1, -1}
	if pod.Exempt {
		if n.exempt == nil {
			n.exempt = map[string]*podrecord.Pod{}
		}
		n.exempt[pod.Name] = pod
	}
	if !pod.Counted {
		return
	}
	c := n.classes[pod.Labels]
	if c == nil {
		c = &labelClass{key: pod.Labels, labels: podrecord.ParseLabels(pod.Labels.Value())}
		n.classes[c.key] = c
		n.strict.Store(strictUnknown) // a new label set may be STRICT
	}
	c.pods++
	e.class = c
	n.counted++
	kind, name := mesh.WorkloadName(pod.Name, c.labels, pod.Controller.Kind, pod.Controller.Name)
	w := n.istio[name]
	if w == nil {
		if n.istio == nil {
			n.istio = map[string]*istioWorkload{}
		}
		w = &istioWorkload{kind: kind, name: name, classes: map[*labelClass]int{}}
		n.istio[name] = w
	}
	w.classes[c]++
	e.istio = w
	for m, mode := range modes {
		if meshed, reason := pod.Classify(mode); !meshed {
			n.unmeshed[m].add(e, m, reason)
			n.groups[m].Store(nil)
		}
	}
}

// forget takes a pod out of the namespace's facts.
func (n *namespace) forget(e *podEntry) {
	delete(n.exempt, e.pod.Name)
	if c := e.class; c != nil {
		if w := e.istio; w != nil {
			if w.classes[c]--; w.classes[c] == 0 {
				delete(w.classes, c)
			}
			if len(w.classes) == 0 {
				delete(n.istio, w.name)
			}
			e.istio = nil
		}
		if c.pods--; c.pods == 0 {
			delete(n.classes, c.key)
			n.strict.Store(strictUnknown)
		}
		e.class = nil
		n.counted--
	}
	for m := range modes {
		if e.slot[m] >= 0 {
			n.unmeshed[m].remove(e, m)
			n.groups[m].Store(nil)
		}
	}
}

func (s *state) deletePod(namespace, name string) {
	n := s.namespaces[namespace]
	if n == nil {
		return
	}
	e := n.pods[name]
	if e == nil {
		return
	}
	n.forget(e)
	delete(n.pods, name)
	if len(n.pods) == 0 {
		s.removePodNamespace(namespace)
	}
	s.gc(namespace)
}

func (s *state) addPodNamespace(name string) {
	i, found := slices.BinarySearch(s.podNamespaces, name)
	if !found {
		s.podNamespaces = slices.Insert(slices.Clip(s.podNamespaces), i, name)
	}
}

func (s *state) removePodNamespace(name string) {
	if i, found := slices.BinarySearch(s.podNamespaces, name); found {
		s.podNamespaces = slices.Delete(slices.Clone(s.podNamespaces), i, i+1)
	}
}

// Namespace implements engine.Cluster.
func (s *state) Namespace(name string) (*corev1.Namespace, error) {
	if n := s.namespaces[name]; n != nil {
		return n.obj, nil
	}
	return nil, nil
}

// PodNamespaces implements engine.Cluster.
func (s *state) PodNamespaces() ([]string, error) { return s.podNamespaces, nil }

// ReplicaSet implements engine.Cluster.
func (s *state) ReplicaSet(namespace, name string) (*appsv1.ReplicaSet, error) {
	if n := s.namespaces[namespace]; n != nil {
		return n.replicaSets[name], nil
	}
	return nil, nil
}

// Job implements engine.Cluster.
func (s *state) Job(namespace, name string) (*batchv1.Job, error) {
	if n := s.namespaces[namespace]; n != nil {
		return n.jobs[name], nil
	}
	return nil, nil
}

// Policies implements engine.Cluster.
func (s *state) Policies(namespace string) ([]*policy.Policy, error) {
	if n := s.namespaces[namespace]; n != nil {
		return n.policyList, nil
	}
	return nil, nil
}

// PodFacts implements engine.Cluster.
func (s *state) PodFacts(namespace string, mode mesh.SidecarMode) (engine.PodFacts, error) {
	m, err := podrecord.ModeIndex(mode)
	if err != nil {
		return engine.PodFacts{}, err
	}
	n := s.namespaces[namespace]
	if n == nil {
		return engine.PodFacts{LabelSets: func(func(map[string]string, int) bool) {}}, nil
	}
	f := engine.PodFacts{Counted: n.counted, LabelSets: n.eachLabelSet, IstioWorkload: n.istioWorkload, Unmeshed: n.unmeshed[m].pods, Workloads: n.workloads[m]}
	for _, pod := range n.exempt {
		if meshed, reason := pod.Classify(mode); !meshed {
			f.Exempt = append(f.Exempt, engine.UnmeshedPod{Namespace: pod.Namespace, Name: pod.Name, Controller: pod.Controller, Reason: reason})
		}
	}
	return f, nil
}

// istioLabelSets implements engine.PodFacts.IstioWorkload.
func (n *namespace) istioLabelSets(name string) (string, iter.Seq2[map[string]string, int]) {
	w := n.istio[name]
	if w == nil {
		return "", nil
	}
	return w.kind, func(yield func(map[string]string, int) bool) {
		for c, pods := range w.classes {
			if !yield(c.labels, pods) {
				return
			}
		}
	}
}

func (n *namespace) labelSets(yield func(map[string]string, int) bool) {
	for _, c := range n.classes {
		if !yield(c.labels, c.pods) {
			return
		}
	}
}
