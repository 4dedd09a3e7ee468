# The guard's decision (docs/decision-rules.md) written as a
# Gatekeeper-style Rego policy, the peer that the benchmark runs next to the
# guard. input.review is the admission request, input.parameters the
# constraint's parameters, and data.inventory what Gatekeeper's sync puts
# there: data.inventory.namespace[ns][apiVersion][kind][name] and
# data.inventory.cluster[apiVersion][kind][name].
#
# It decides what the guard decides for valid policies: mesh, namespace and
# workload levels with Istio's oldest-wins and UNSET inheritance, counted
# and meshed pods with the reason of each unmeshed one, touched namespaces,
# the unmeshed workloads grouped by owner, namespaces being deleted and the
# override. It leaves out portLevelMtls, the validity checks and the
# warnings, which the benchmarked decisions do not reach.
package mtlsguard

import rego.v1

params := input.parameters

root := params.rootNamespace

excluded(ns) if ns in params.excludedNamespaces

excluded(ns) if ns == root

review := input.review

op := review.operation

changed := review.oldObject if op == "DELETE"

changed := review.object if op != "DELETE"

pns := object.get(changed.metadata, "namespace", review.namespace)

pname := changed.metadata.name

pods(ns) := data.inventory.namespace[ns].v1.Pod

stored_policies(ns) := ps if {
	ps := data.inventory.namespace[ns]["security.istio.io/v1"].PeerAuthentication
} else := {}

# An UPDATE keeps the stored creationTimestamp, as the API server does; so
# does a CREATE or DELETE of an object without one.
stored_created := stored_policies(pns)[pname].metadata.creationTimestamp

self_policy := object.union(changed, {"metadata": {"creationTimestamp": stored_created}}) if {
	op == "UPDATE"
	stored_created
} else := object.union(changed, {"metadata": {"creationTimestamp": stored_created}}) if {
	not changed.metadata.creationTimestamp
	stored_created
} else := changed

# The policies of the changed policy's namespace before and after.
own_before := object.union(stored_policies(pns), {pname: self_policy}) if op == "DELETE"

own_before := stored_policies(pns) if op != "DELETE"

own_after := object.remove(own_before, {pname}) if op == "DELETE"

own_after := object.union(own_before, {pname: self_policy}) if op != "DELETE"

policies_before(ns) := own_before if ns == pns

policies_before(ns) := stored_policies(ns) if ns != pns

policies_after(ns) := own_after if ns == pns

policies_after(ns) := stored_policies(ns) if ns != pns

mode(p) := object.get(p, ["spec", "mtls", "mode"], "UNSET")

has_selector(p) if count(object.get(p, ["spec", "selector", "matchLabels"], {})) > 0

# Oldest first: creationTimestamp, then name; none is the newest.
age(p) := [0, p.metadata.creationTimestamp, p.metadata.name] if p.metadata.creationTimestamp

age(p) := [1, "", p.metadata.name] if not p.metadata.creationTimestamp

oldest_wide(ps) := p if {
	ages := {age(q) | some q in ps; not has_selector(q)}
	count(ages) > 0
	oldest := min(ages)
	some p in ps
	not has_selector(p)
	age(p) == oldest
}

inherit(m, d) := m if m != "UNSET" else := d

mesh_mode(ps) := m if {
	m := mode(oldest_wide(ps))
	m != "UNSET"
} else := "PERMISSIVE"

mesh_before := mesh_mode(policies_before(root))

mesh_after := mesh_mode(policies_after(root))

workload_policies(ps) := [p |
	some a in sort([age(q) | some q in ps; has_selector(q)])
	some p in ps
	has_selector(p)
	age(p) == a
]

level(mesh, ps) := {"mode": inherit(mode(oldest_wide(ps)), mesh), "workload": workload_policies(ps)} if {
	oldest_wide(ps)
} else := {"mode": mesh, "workload": workload_policies(ps)}

# The namespaces a change may touch.
candidates contains pns if {
	pns != root
	not excluded(pns)
}

candidates contains ns if {
	pns == root
	mesh_before != mesh_after
	some ns, _ in data.inventory.namespace
	count(object.get(data.inventory.namespace[ns], ["v1", "Pod"], {})) > 0
	not excluded(ns)
}

lb[ns] := level(mesh_before, policies_before(ns)) if some ns in candidates

la[ns] := level(mesh_after, policies_after(ns)) if some ns in candidates

matches(p, labels) if {
	every k, v in p.spec.selector.matchLabels {
		labels[k] == v
	}
}

effective(l, labels) := inherit(mode(first), l.mode) if {
	matching := [p | some p in l.workload; matches(p, labels)]
	count(matching) > 0
	first := matching[0]
} else := l.mode

counted(pod) if {
	phase := object.get(pod, ["status", "phase"], "")
	phase != "Succeeded"
	phase != "Failed"
	not pod.metadata.deletionTimestamp
	object.get(pod.metadata, ["labels", "mtls-guard.io/exempt"], "") != "true"
}

gains(ns, labels) if {
	effective(la[ns], labels) == "STRICT"
	effective(lb[ns], labels) != "STRICT"
}

level_changes(ns) if ns == pns

level_changes(ns) if lb[ns] != la[ns]

ns_touched(ns) if {
	some pod in pods(ns)
	counted(pod)
	gains(ns, object.get(pod.metadata, "labels", {}))
}

touched contains ns if {
	some ns in candidates
	level_changes(ns)
	ns_touched(ns)
}

# Meshed and unmeshed pods.
proxy := "istio-proxy"

meshed(pod) if {
	some c in object.get(pod.spec, "initContainers", [])
	c.name == proxy
	c.restartPolicy == "Always"
}

meshed(pod) if {
	some c in object.get(pod.spec, "containers", [])
	c.name == proxy
	"router" in object.get(c, "args", [])
}

meshed(pod) if object.get(pod.metadata, ["annotations", "ambient.istio.io/redirection"], "") == "enabled"

meshed(pod) if {
	params.sidecarMode == "any"
	classic(pod)
}

classic(pod) if {
	some c in object.get(pod.spec, "containers", [])
	c.name == proxy
}

injection_disabled(pod) if object.get(pod.metadata, ["labels", "sidecar.istio.io/inject"], "") == "false"

injection_disabled(pod) if object.get(pod.metadata, ["annotations", "sidecar.istio.io/inject"], "") == "false"

reason(pod) := "host-network" if {
	object.get(pod.spec, "hostNetwork", false) == true
} else := "injection-disabled" if {
	injection_disabled(pod)
} else := "classic-sidecar" if {
	classic(pod)
} else := "ambient-pending" if {
	object.get(pod.metadata, ["annotations", "ambient.istio.io/redirection"], null) != null
} else := "no-sidecar"

# Owners: Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob, any other
# controller as named.
controller(obj) := r if {
	some r in object.get(obj.metadata, "ownerReferences", [])
	r.controller == true
}

owner(ns, pod) := owner_of(ns, pod, r) if {
	r := controller(pod)
} else := ["Pod", pod.metadata.name]

owner_of(ns, pod, r) := o if {
	r.kind == "ReplicaSet"
	rs := data.inventory.namespace[ns]["apps/v1"].ReplicaSet[r.name]
	o := up_or(rs, "ReplicaSet")
} else := ["Deployment", d] if {
	r.kind == "ReplicaSet"
	h := object.get(pod.metadata, ["labels", "pod-template-hash"], "")
	h != ""
	suffix := concat("", ["-", h])
	endswith(r.name, suffix)
	d := trim_suffix(r.name, suffix)
	d != ""
} else := [u.kind, u.name] if {
	r.kind == "Job"
	job := data.inventory.namespace[ns]["batch/v1"].Job[r.name]
	u := controller(job)
} else := [r.kind, r.name]

up_or(obj, kind) := [u.kind, u.name] if {
	u := controller(obj)
} else := [kind, obj.metadata.name]

# The unmeshed pods of the touched namespaces, grouped by workload.
unmeshed[key] contains [name, reason(pod)] if {
	some ns in touched
	some name, pod in pods(ns)
	counted(pod)
	not meshed(pod)
	o := owner(ns, pod)
	key := [ns, o[0], o[1]]
}

workloads := [w |
	some key in sort(object.keys(unmeshed))
	w := {
		"namespace": key[0], "kind": key[1], "name": key[2],
		"pods": sort({u[0] | some u in unmeshed[key]}),
		"reasons": sort({u[1] | some u in unmeshed[key]}),
	}
]

override_reason := trim_space(object.get(changed.metadata, ["annotations", "mtls-guard.io/override-reason"], ""))

default allowed := false

allowed if count(workloads) == 0

allowed if {
	override_reason != ""
	params.allowOverride
}

decision := {"allowed": true, "touched": [], "workloads": []} if {
	pns != root
	excluded(pns)
} else := {"allowed": true, "touched": [], "workloads": []} if {
	op == "DELETE"
	data.inventory.cluster.v1.Namespace[pns].metadata.deletionTimestamp
} else := {"allowed": allowed, "touched": sort(touched), "workloads": workloads}

# Gatekeeper's entry point: one violation per unmeshed workload.
violation contains {"msg": msg} if {
	not decision.allowed
	some w in decision.workloads
	msg := sprintf("STRICT mTLS would cut off %s/%s/%s (%v)", [w.namespace, w.kind, w.name, w.reasons])
}
