package certmanager_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// logFile collects cert-manager's, client-go's and the guard's logs, so
// that a failing run can show them without drowning a passing one; testLog
// writes to it.
var (
	logFile *os.File
	testLog logr.Logger
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	f, err := os.CreateTemp("", "mtls-guard-certmanager-*.log")
	if err != nil {
		fmt.Fprintf(os.Stderr, "creating the log file: %v\n", err)
		return 1
	}
	logFile = f
	testLog = newLogger(f)
	// Global loggers: the cainjector logs through controller-runtime's,
	// client-go through klog.
	ctrllog.SetLogger(testLog)
	klog.SetLogger(testLog.WithName("klog"))

	rc := m.Run()
	if guardBuild.dir != "" {
		os.RemoveAll(guardBuild.dir)
	}
	f.Close()
	if rc != 0 {
		fmt.Fprintf(os.Stderr, "cert-manager, client-go and guard logs kept in %s; last lines:\n", f.Name())
		printTail(os.Stderr, f.Name(), 60)
		return rc
	}
	os.Remove(f.Name())
	return rc
}

// newLogger writes JSON lines to w, one at a time.
func newLogger(w io.Writer) logr.Logger {
	var mu sync.Mutex
	return funcr.NewJSON(func(obj string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(w, obj)
	}, funcr.Options{Verbosity: 2, LogTimestamp: true})
}

func printTail(w io.Writer, path string, n int) {
	f, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(w, "  (%v)\n", err)
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	for _, l := range lines {
		fmt.Fprintln(w, "  "+l)
	}
}
