package route

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/hookbridge/hookbridge/bridge/event"
)

// CostLimit bounds what one condition may cost on one event, in CEL's
// cost units (about one per operation, and per ten bytes a string
// operation reads; some 65 ns each on a 2-core machine). A condition
// whose worst case exceeds it on a body of the largest size allowed is
// refused when the config loads; evaluation stops at it too. It admits
// one pass over any list of a 1 MiB body (say, data.steps.exists(s,
// s.status == "failed")) and refuses a pass inside a pass, which could
// cost minutes on a large body.
const CostLimit = 10_000_000

// conditionVariables are the names a condition can use, with their CEL
// types: the CloudEvent's attributes and its data.
var conditionVariables = []struct {
	name string
	typ  *cel.Type
}{
	{"id", cel.StringType},
	{"source", cel.StringType},
	{"type", cel.StringType},
	{"subject", cel.StringType},
	{"time", cel.TimestampType},
	{"status", cel.StringType},
	{"data", cel.MapType(cel.StringType, cel.DynType)},
}

// Compiler compiles route conditions (`when:`) for one config. Build one
// per config load: it holds the CEL environment, which is immutable and
// safe for concurrent use, and the time zones its conditions name.
type Compiler struct {
	env *cel.Env
	// maxBody is the largest body the ingress accepts: it bounds the size
	// of anything in data when estimating a condition's cost.
	maxBody uint64
	// zones are the time zones named in the conditions, by name, loaded
	// once at compile time (*time.Location).
	zones sync.Map
}

// NewCompiler makes a Compiler for events of bodies up to maxBodyBytes.
func NewCompiler(maxBodyBytes int64) (*Compiler, error) {
	if maxBodyBytes < 2 {
		maxBodyBytes = 2
	}
	c := &Compiler{maxBody: uint64(maxBodyBytes)}
	opts := []cel.EnvOption{
		cel.OptionalTypes(),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
		cel.DefaultUTCTimeZone(true),
	}
	for _, v := range conditionVariables {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	opts = append(opts, c.zoneFunctions()...)
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("route conditions: %w", err)
	}
	c.env = env
	return c, nil
}

// zoneOverloads are CEL's timestamp methods that take a time zone.
var zoneOverloads = []struct {
	function, overload string
	field              func(time.Time) int
}{
	{"getFullYear", overloads.TimestampToYearWithTz, time.Time.Year},
	{"getMonth", overloads.TimestampToMonthWithTz, func(t time.Time) int { return int(t.Month()) - 1 }},
	{"getDayOfYear", overloads.TimestampToDayOfYearWithTz, func(t time.Time) int { return t.YearDay() - 1 }},
	{"getDayOfMonth", overloads.TimestampToDayOfMonthZeroBasedWithTz, func(t time.Time) int { return t.Day() - 1 }},
	{"getDate", overloads.TimestampToDayOfMonthOneBasedWithTz, time.Time.Day},
	{"getDayOfWeek", overloads.TimestampToDayOfWeekWithTz, func(t time.Time) int { return int(t.Weekday()) }},
	{"getHours", overloads.TimestampToHoursWithTz, time.Time.Hour},
	{"getMinutes", overloads.TimestampToMinutesWithTz, time.Time.Minute},
	{"getSeconds", overloads.TimestampToSecondsWithTz, time.Time.Second},
	{"getMilliseconds", overloads.TimestampToMillisecondsWithTz, func(t time.Time) int { return t.Nanosecond() / 1e6 }},
}

// zoneFunctions redefine those methods to use the zones loaded at compile
// time: CEL's own call time.LoadLocation, which reads the zone from disk,
// on every event. A zone not named in a condition (one read from data)
// still goes through CEL's own.
func (c *Compiler) zoneFunctions() []cel.EnvOption {
	var opts []cel.EnvOption
	for _, o := range zoneOverloads {
		opts = append(opts, cel.Function(o.function, cel.MemberOverload(o.overload,
			[]*cel.Type{cel.TimestampType, cel.StringType}, cel.IntType,
			cel.BinaryBinding(func(ts, tz ref.Val) ref.Val {
				t, okT := ts.(types.Timestamp)
				name, okZ := tz.(types.String)
				if okT && okZ {
					if loc, ok := c.zones.Load(string(name)); ok {
						return types.Int(o.field(t.In(loc.(*time.Location))))
					}
				}
				if !okT {
					return types.MaybeNoSuchOverloadErr(ts)
				}
				return t.Receive(o.function, o.overload, []ref.Val{tz})
			}))))
	}
	return opts
}

// A CompileError is a condition that does not compile, with where in the
// expression (1-based line and column; 0 when CEL gave none).
type CompileError struct {
	Line, Column int
	Msg          string
}

func (e *CompileError) Error() string {
	switch {
	case e.Line > 1:
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	case e.Column > 0:
		return fmt.Sprintf("column %d: %s", e.Column, e.Msg)
	}
	return e.Msg
}

// Compile parses, type-checks and plans a condition. It fails, with
// errors of type *CompileError, when the expression does not parse, uses
// a name or function that does not exist, is not boolean, names a time
// zone that does not exist, or may cost more than CostLimit.
func (c *Compiler) Compile(expr string) (*Condition, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &CompileError{Msg: "empty expression: write one that is true for the events the route takes, or remove when"}
	}
	checked, iss := c.env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		var errs []error
		for _, e := range iss.Errors() {
			line, col := e.Location.Line(), e.Location.Column()
			if col >= 0 {
				col++ // CEL counts columns from 0
			}
			errs = append(errs, &CompileError{Line: line, Column: col, Msg: e.Message})
		}
		return nil, errors.Join(errs...)
	}
	switch out := checked.OutputType(); {
	case out.IsExactType(cel.BoolType):
	case out.IsExactType(cel.DynType):
		// data.x, or data.?x.orValue(false): boolean or not is known
		// only on an event; anything else is an evaluation error then.
	default:
		return nil, &CompileError{Msg: fmt.Sprintf("the expression gives %s, not bool: compare it to something (== \"vip\", > 5, in [...])", out)}
	}
	if err := c.loadTimeZones(checked.NativeRep().Expr()); err != nil {
		return nil, err
	}
	est, err := c.env.EstimateCost(checked, sizeBound{c.maxBody})
	if err != nil {
		return nil, &CompileError{Msg: "cannot estimate its cost: " + err.Error()}
	}
	if est.Max > CostLimit {
		return nil, &CompileError{Msg: fmt.Sprintf("may cost up to %s on a body of max_body_bytes (%d), more than the limit of %d: avoid a pass over a list inside another pass, or lower server.max_body_bytes",
			costString(est.Max), c.maxBody, CostLimit)}
	}
	prg, err := c.env.Program(checked, cel.EvalOptions(cel.OptOptimize), cel.CostLimit(CostLimit))
	if err != nil {
		return nil, &CompileError{Msg: err.Error()}
	}
	return &Condition{src: expr, prg: prg}, nil
}

func costString(n uint64) string {
	if n == ^uint64(0) {
		return "an unbounded amount"
	}
	return fmt.Sprint(n)
}

// sizeBound tells CEL's cost estimator how large the event's values can
// be: nothing in data is larger than the body. A list has at most one
// element per two bytes of the body ("1,"), a map one member per four
// ("":1,), and a string one byte per byte.
type sizeBound struct{ maxBody uint64 }

func (b sizeBound) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	return b.of(n.Type())
}

func (b sizeBound) of(t *types.Type) *cost.SizeEstimate {
	max := b.maxBody
	switch t.Kind() {
	case types.ListKind, types.DynKind:
		max /= 2
	case types.MapKind:
		max /= 4
	}
	return &cost.SizeEstimate{Min: 0, Max: max}
}

// EstimateCallCost bounds what CEL's own model leaves unbounded: the value
// an optional yields (data.?a.orValue(""), data.?a.value()) is at most as
// large as the body, like the member it came from.
func (b sizeBound) EstimateCallCost(function, _ string, _ *cost.AstNode, _ []cost.AstNode) *cost.CallEstimate {
	switch function {
	case "orValue", "value":
		return cost.NewCallEstimate(cost.FixedCostEstimate(1), b.of(types.DynType))
	}
	return nil
}

// timeZoneFunctions take a time zone as their last argument.
var timeZoneFunctions = map[string]bool{
	"getFullYear": true, "getMonth": true, "getDayOfYear": true, "getDayOfMonth": true, "getDate": true,
	"getDayOfWeek": true, "getHours": true, "getMinutes": true, "getSeconds": true, "getMilliseconds": true,
}

// loadTimeZones refuses a time zone written in the expression that does
// not exist, which CEL would otherwise report on every event, and loads
// those that do. The zone is tried the way CEL itself reads it, by the
// same function on the epoch.
func (c *Compiler) loadTimeZones(e ast.Expr) error {
	var err error
	epoch := types.Timestamp{Time: time.Unix(0, 0).UTC()}
	ast.PreOrderVisit(e, ast.NewExprVisitor(func(e ast.Expr) {
		if err != nil || e.Kind() != ast.CallKind {
			return
		}
		call := e.AsCall()
		args := call.Args()
		if !timeZoneFunctions[call.FunctionName()] || !call.IsMemberFunction() || len(args) != 1 || args[0].Kind() != ast.LiteralKind {
			return
		}
		tz, ok := args[0].AsLiteral().(types.String)
		if !ok {
			return
		}
		if out := epoch.Receive(call.FunctionName(), "", []ref.Val{tz}); types.IsError(out) {
			err = &CompileError{Msg: fmt.Sprintf("%s(%q): %v: use an IANA name such as \"Europe/Paris\", or an offset such as \"+02:00\"", call.FunctionName(), string(tz), out)}
			return
		}
		if !strings.Contains(string(tz), ":") { // not an offset, which CEL reads without the disk
			if loc, lerr := time.LoadLocation(string(tz)); lerr == nil {
				c.zones.Store(string(tz), loc)
			}
		}
	}))
	return err
}

// Condition is a compiled `when`: safe for concurrent use.
type Condition struct {
	src string
	prg cel.Program
}

// String returns the expression as written.
func (c *Condition) String() string { return c.src }

// Eval reports whether the condition holds for ev. An error (a missing
// key read without ?, a type mismatch, the cost limit) means it does not.
func (c *Condition) Eval(ev *event.Event) (bool, error) {
	act := vars{ev: ev}
	return c.eval(&act)
}

func (c *Condition) eval(act *vars) (bool, error) {
	out, _, err := c.prg.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("the expression gave %s, not bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// vars is what a condition sees of one event, shared by the conditions
// evaluated on it: data is read from the payload once, on first use.
type vars struct {
	ev   *event.Event
	data ref.Val
}

var _ interpreter.Activation = (*vars)(nil)

// ResolveName implements interpreter.Activation.
func (v *vars) ResolveName(name string) (any, bool) {
	ev := v.ev
	switch name {
	case "id":
		return types.String(ev.ID), true
	case "source":
		return types.String(ev.Source), true
	case "type":
		return types.String(ev.Type), true
	case "subject":
		return types.String(ev.TaskID), true
	case "time":
		return types.Timestamp{Time: ev.Time}, true
	case "status":
		return types.String(ev.Status), true
	case "data":
		if v.data == nil {
			v.data = jsonValue(ev.Payload)
			if _, ok := v.data.(*jsonObject); !ok {
				v.data = types.NewErr("the event's data is not a JSON object")
			}
		}
		return v.data, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (*vars) Parent() interpreter.Activation { return nil }
