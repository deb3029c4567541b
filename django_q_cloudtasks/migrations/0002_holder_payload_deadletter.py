from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_q_cloudtasks", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="receipt",
            name="holder",
            field=models.CharField(default="", max_length=32),
            preserve_default=False,
        ),
        migrations.CreateModel(
            name='Payload',
            fields=[
                ('task_id', models.CharField(max_length=100, primary_key=True, serialize=False)),
                ('package', models.TextField()),
                ('created', models.DateTimeField(db_index=True)),
            ],
            options={
                'verbose_name': 'task payload',
            },
        ),
        migrations.CreateModel(
            name='DeadLetter',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('received', models.DateTimeField(db_index=True)),
                ('path', models.CharField(max_length=200)),
                ('queue', models.CharField(blank=True, max_length=500)),
                ('cloud_task', models.CharField(blank=True, max_length=500)),
                ('reason', models.TextField()),
                ('content_type', models.CharField(blank=True, max_length=200)),
                ('body', models.BinaryField()),
            ],
            options={
                'verbose_name': 'dead letter',
            },
        ),
    ]
