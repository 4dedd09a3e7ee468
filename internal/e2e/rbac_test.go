package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/mtls-guard/mtls-guard/internal/testenv"
)

// TestGuardUsesOnlyShippedRBAC reads the API server's audit log: every
// request the guard made as its ServiceAccount was allowed by deploy/'s
// ClusterRole, and every resource the role grants was used.
func TestGuardUsesOnlyShippedRBAC(t *testing.T) {
	// Make the guard use every permission: a denial records an Event.
	ns := namespace(t, "rbac", injected)
	create(t, pod(ns, "bare", nil, unmeshed))
	eventually(t, pa(ns, "default", "STRICT"), true)
	if err := suite.admin.Create(context.Background(), pa(ns, "default", "STRICT")); !isDenial(err) {
		t.Fatalf("want denial, got %v", err)
	}

	var role rbacv1.ClusterRole
	if err := suite.admin.Get(context.Background(), client.ObjectKey{Name: suite.guardRole}, &role); err != nil {
		t.Fatal(err)
	}
	granted := sets.New[string]()
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				granted.Insert(g + "/" + res)
			}
		}
	}

	type record struct {
		User struct {
			Username string `json:"username"`
		} `json:"user"`
		Verb      string `json:"verb"`
		Stage     string `json:"stage"`
		ObjectRef *struct {
			APIGroup string `json:"apiGroup"`
			Resource string `json:"resource"`
		} `json:"objectRef"`
		ResponseStatus struct {
			Code int `json:"code"`
		} `json:"responseStatus"`
	}
	var used sets.Set[string]
	var refused []string
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		f, err := os.Open(suite.env.AuditLog)
		if err != nil {
			return false, err
		}
		defer f.Close()
		used, refused = sets.New[string](), nil
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r record
			if json.Unmarshal(sc.Bytes(), &r) != nil || r.User.Username != testenv.GuardUser || r.ObjectRef == nil {
				continue
			}
			key := r.ObjectRef.APIGroup + "/" + r.ObjectRef.Resource
			used.Insert(key)
			if r.ResponseStatus.Code == 401 || r.ResponseStatus.Code == 403 {
				refused = append(refused, r.Verb+" "+key)
			}
		}
		// The Event is written asynchronously; wait for it.
		return used.Has("events.k8s.io/events"), sc.Err()
	})
	if err != nil {
		t.Fatalf("the guard never wrote an Event (used: %v): %v", sorted(used), err)
	}
	if len(refused) > 0 {
		t.Errorf("the API server refused the guard: %v; the shipped RBAC is not enough", refused)
	}
	if extra := used.Difference(granted); extra.Len() > 0 {
		t.Errorf("the guard used resources its ClusterRole does not grant: %v", sorted(extra))
	}
	if unused := granted.Difference(used); unused.Len() > 0 {
		t.Errorf("the ClusterRole grants resources the guard never used: %v", sorted(unused))
	}
	t.Logf("the guard used exactly %s", strings.Join(sorted(used), ", "))
}

func sorted(s sets.Set[string]) []string {
	out := s.UnsortedList()
	sort.Strings(out)
	return out
}
