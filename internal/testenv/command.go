package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
)

// Result is what a command printed and how it exited.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs cmd and captures its output and exit status. A non-zero exit
// is a Result, not an error: err says only that the command could not run
// or did not exit.
func Run(cmd *exec.Cmd) (Result, error) {
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		r.Code = ee.ExitCode()
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("running %s: %w", cmd.Path, err)
	}
	return r, nil
}

// Kubectl is bin/kubectl in binDir with the kubeconfig and args.
func Kubectl(binDir, kubeconfig string, args ...string) *exec.Cmd {
	return exec.Command(filepath.Join(binDir, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
}
