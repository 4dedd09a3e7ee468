// Package policy turns Istio PeerAuthentications (security.istio.io v1 and
// v1beta1) into the compact form the decision engine reads, and checks them
// against the guard's validity rules.
package policy

import (
	"fmt"

	apisecurity "istio.io/api/security/v1beta1"
)

// Mode is a PeerAuthentication mTLS mode.
type Mode int8

// The modes, in the order of Istio's enum.
const (
	Unset Mode = iota
	Disable
	Permissive
	Strict
)

var modeNames = [...]string{"UNSET", "DISABLE", "PERMISSIVE", "STRICT"}

// String returns the mode as Istio spells it.
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return fmt.Sprintf("Mode(%d)", int(m))
	}
	return modeNames[m]
}

// ParseMode parses a mode name; the empty string is UNSET.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return Unset, nil
	}
	for i, n := range modeNames {
		if n == s {
			return Mode(i), nil
		}
	}
	return Unset, fmt.Errorf("unknown mTLS mode %q (want UNSET, DISABLE, PERMISSIVE or STRICT)", s)
}

func fromAPI(m *apisecurity.PeerAuthentication_MutualTLS) (Mode, error) {
	if m == nil {
		return Unset, nil
	}
	// Check the range on the enum's int32 before narrowing it: Mode is an
	// int8, and 259 would otherwise wrap to STRICT.
	v := int32(m.GetMode())
	if v < int32(Unset) || v > int32(Strict) {
		return Unset, fmt.Errorf("unknown mTLS mode %d (want UNSET, DISABLE, PERMISSIVE or STRICT)", v)
	}
	return Mode(v), nil
}
