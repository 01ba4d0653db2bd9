package rb.peers;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * The streaming job the rb real-peer tier keeps running on its Flink cluster.
 *
 * <p>An endless, rate-limited sequence of longs is keyed into {@code KEYS} buckets; each bucket keeps a
 * running count in keyed {@link ValueState}, so every checkpoint and savepoint carries real state. The
 * result goes to a discarding sink. Operator uids are fixed so a savepoint can be restored into a new run.
 *
 * <p>Arguments (all optional): {@code <job name> <records per second>}.
 */
public final class CounterJob {
    private static final long KEYS = 32L;

    private CounterJob() {}

    public static void main(String[] args) throws Exception {
        final String name = args.length > 0 ? args[0] : "rb-peers-counter";
        final double perSecond = args.length > 1 ? Double.parseDouble(args[1]) : 100.0;

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        DataGeneratorSource<Long> numbers = new DataGeneratorSource<>(
                new Sequence(), Long.MAX_VALUE, RateLimiterStrategy.perSecond(perSecond), Types.LONG);

        env.fromSource(numbers, WatermarkStrategy.noWatermarks(), "numbers")
                .uid("rb-numbers")
                .keyBy(new Bucket(), Types.LONG)
                .map(new CountPerBucket())
                .uid("rb-count")
                .name("count-per-bucket")
                .sinkTo(new DiscardingSink<>())
                .uid("rb-discard")
                .name("discard");
        env.execute(name);
    }

    /** The i-th generated record is i. */
    static final class Sequence implements GeneratorFunction<Long, Long> {
        @Override
        public Long map(Long index) {
            return index;
        }
    }

    /** Which bucket a number belongs to. */
    static final class Bucket implements KeySelector<Long, Long> {
        @Override
        public Long getKey(Long value) {
            return value % KEYS;
        }
    }

    /** Counts the records seen per bucket in keyed state and emits the new count. */
    static final class CountPerBucket extends RichMapFunction<Long, Long> {
        private transient ValueState<Long> seen;

        @Override
        public void open(OpenContext context) {
            seen = getRuntimeContext().getState(new ValueStateDescriptor<>("seen", Types.LONG));
        }

        @Override
        public Long map(Long value) throws Exception {
            Long before = seen.value();
            long now = before == null ? 1L : before + 1L;
            seen.update(now);
            return now;
        }
    }
}
